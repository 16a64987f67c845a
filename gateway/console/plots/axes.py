"""Scales and ticks: data values to SVG coordinates, and round tick values a person reads easily."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Scale:
    """A linear map from [low, high] in data to [start, end] in pixels (end < start for a y axis)."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.start + (value - self.low) / span * (self.end - self.start)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values from `low` to `high`: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    # The round step whose number of intervals comes closest to the one asked for.
    step = min((m * power for m in (1, 2, 2.5, 5, 10)), key=lambda s: abs((high - low) / s - (count - 1)))
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def nice_upper(high: float) -> float:
    """The smallest round value at or above `high`, so the top tick closes the axis."""
    if high <= 0:
        return 1.0
    ticks = nice_ticks(0, high)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else high
    return ticks[-1] if ticks[-1] >= high else ticks[-1] + step


TIME_STEPS = (3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400)


def time_ticks(low: float, high: float, count: int = 4) -> tuple[list[float], Callable[[float], str]]:
    """Tick positions (Unix seconds) on whole hours or days, and how to label them."""
    span = max(high - low, 3600)
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1])
    first = math.ceil(low / step) * step
    ticks = [float(t) for t in range(int(first), int(high) + 1, step)]
    if step < 86400:  # hours: the day at midnight, the hour elsewhere (short labels that do not collide)
        return ticks, lambda t: datetime.fromtimestamp(t, UTC).strftime("%d %b" if t % 86400 == 0 else "%H:%M")
    return ticks, lambda t: datetime.fromtimestamp(t, UTC).strftime("%d %b")


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.3g}"
