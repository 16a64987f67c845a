"""The charts the console draws, as SVG markup: lines with an interval band and time markers, stacked bars over
time, grouped bars, horizontal bars. Every chart comes with its data as a table (`Chart.rows`) for screen readers
and for people who want the numbers; every plotted point can be reached with the keyboard (up to `MAX_FOCUSABLE`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from markupsafe import Markup, escape

from gateway.console.plots.axes import Scale, nice_ticks, nice_upper, number, time_ticks
from gateway.console.plots.palette import MARKER, colour

# Small on purpose: a chart is drawn at half a desktop page or a whole phone, so its text stays readable at both.
WIDTH, HEIGHT = 440, 230
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 22, 34
TICK_CHAR_WIDTH = 8.4  # a tick label's character at its largest font size (14 px, phone width), in SVG units
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4")  # a second cue besides the hue
MAX_FOCUSABLE = 80  # past this many points, the table carries them and the line alone is drawn


@dataclass(frozen=True)
class Point:
    x: float  # Unix seconds on a time axis, else the value itself (a step)
    y: float
    low: float | None = None  # the interval around y, drawn as a band
    high: float | None = None
    note: str = ""  # what a person reads with the value: "40 ratings"


@dataclass(frozen=True)
class Line:
    name: str
    points: list[Point]


@dataclass(frozen=True)
class Marker:
    x: float
    label: str


@dataclass(frozen=True)
class Bars:
    name: str
    values: list[float]


@dataclass(frozen=True)
class Chart:
    """An SVG and the same data as a table."""

    svg: Markup
    title: str
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # (name, colour, dash)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    empty: bool = False


def line_chart(
    title: str,
    lines: Sequence[Line],
    *,
    time_axis: bool = True,
    y_format: Callable[[float], str] = number,
    y_range: tuple[float, float] | None = None,
    markers: Sequence[Marker] = (),
    x_label: str = "",
    css_class: str = "",
) -> Chart:
    """Lines over x, each with its interval band where points carry one; `markers` are dashed vertical rules
    (a promotion on the time axis)."""
    points = [p for line in lines for p in line.points]
    if not points:
        return _empty(title)
    xs = [p.x for p in points] + [m.x for m in markers]
    x_low, x_high = min(xs), max(xs)
    if x_low == x_high:
        pad = 3600.0 if time_axis else 1.0
        x_low, x_high = x_low - pad, x_high + pad
    if y_range is None:
        tops = [p.high if p.high is not None else p.y for p in points]
        y_range = (0.0, nice_upper(max(tops)))
    x = Scale(x_low, x_high, LEFT, WIDTH - RIGHT)
    y = Scale(y_range[0], y_range[1], HEIGHT - BOTTOM, TOP)
    x_format = _x_format(time_axis, x_low, x_high)
    parts = _frame(title, css_class)
    parts += _y_axis(y, y_format)
    parts += _x_axis(x, time_axis, x_label)
    focusable = len(points) <= MAX_FOCUSABLE
    legend = []
    for index, line in enumerate(lines):
        hue, dash = colour(index), DASHES[index % len(DASHES)]
        legend.append((line.name, hue, dash))
        ordered = sorted(line.points, key=lambda p: p.x)
        band = [(p.x, p.low, p.high) for p in ordered if p.low is not None and p.high is not None]
        if len(band) >= 2:
            upper = [f"{x(at):.1f},{y(high):.1f}" for at, _, high in band]
            lower = [f"{x(at):.1f},{y(low):.1f}" for at, low, _ in reversed(band)]
            parts.append(f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{hue}" opacity="0.18"/>')
        elif len(band) == 1:
            at, low, high = band[0]
            parts.append(
                f'<line class="band" x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{y(low):.1f}" '
                f'y2="{y(high):.1f}" stroke="{hue}" stroke-width="8" opacity="0.25"/>'
            )
        coords = " ".join(f"{x(p.x):.1f},{y(p.y):.1f}" for p in ordered)
        parts.append(
            f'<polyline class="series" data-series="{escape(line.name)}" data-points="{len(ordered)}" '
            f'points="{coords}" fill="none" stroke="{hue}" stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        if focusable:
            for p in ordered:
                label = f"{line.name}, {x_format(p.x)}: {_value_text(p, y_format)}"
                parts.append(
                    f'<g class="point" tabindex="0" role="img" aria-label="{escape(label)}">'
                    f"<title>{escape(label)}</title>"
                    f'<circle cx="{x(p.x):.1f}" cy="{y(p.y):.1f}" r="4" fill="{hue}" stroke="#fff"/></g>'
                )
    for marker in markers:
        mx = x(marker.x)
        label = f"{marker.label} ({x_format(marker.x)})"
        # Near the right edge the label reads leftwards from its rule, so it stays inside the chart.
        tx, anchor = (mx - 3, "end") if mx > WIDTH - 130 else (mx + 3, "start")
        parts.append(
            f'<g class="marker" tabindex="0" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP - 4}" y2="{HEIGHT - BOTTOM}" stroke="{MARKER}" '
            f'stroke-dasharray="4 3"/><text x="{tx:.1f}" y="{TOP - 8}" text-anchor="{anchor}" class="marker-label">'
            f"{escape(marker.label)}</text></g>"
        )
    parts.append("</svg>")
    rows = [
        [line.name, x_format(p.x), y_format(p.y), _interval_text(p, y_format), p.note]
        for line in lines
        for p in sorted(line.points, key=lambda p: p.x)
    ]
    rows += [[f"marker: {m.label}", x_format(m.x), "", "", ""] for m in markers]
    columns = ["series", x_label or ("time (UTC)" if time_axis else "x"), "value", "interval", ""]
    return Chart(Markup("".join(parts)), title, legend, columns, rows)


def stacked_bars(
    title: str, starts: Sequence[float], width_s: float, series: Sequence[Bars], *, y_label: str = ""
) -> Chart:
    """Bars over time, one per bucket starting at `starts[i]`, each stacked from the series' values."""
    totals = [sum(s.values[i] for s in series) for i in range(len(starts))]
    if not starts or not any(totals):
        return _empty(title)
    x = Scale(min(starts), max(starts) + width_s, LEFT, WIDTH - RIGHT)
    y = Scale(0, nice_upper(max(totals)), HEIGHT - BOTTOM, TOP)
    x_format = _x_format(True, min(starts), max(starts) + width_s)
    parts = _frame(title, "")
    parts += _y_axis(y, number)
    parts += _x_axis(x, True, "")
    bar_width = max(1.0, x(starts[0] + width_s) - x(starts[0]) - 1.5)
    focusable = sum(1 for t in totals if t) <= MAX_FOCUSABLE
    for i, start in enumerate(starts):
        if not totals[i]:
            continue
        base = 0.0
        label = f"{x_format(start)}: " + ", ".join(f"{s.name} {number(s.values[i])}" for s in series if s.values[i])
        tab = ' tabindex="0"' if focusable else ""
        parts.append(f'<g class="bar"{tab} role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>')
        for index, s in enumerate(series):
            value = s.values[i]
            if value:
                top, bottom = y(base + value), y(base)
                parts.append(
                    f'<rect x="{x(start) + 0.75:.1f}" y="{top:.1f}" width="{bar_width:.1f}" '
                    f'height="{bottom - top:.1f}" fill="{colour(index)}"/>'
                )
                base += value
        parts.append("</g>")
    if y_label:
        parts.append(f'<text class="axis-title" x="{LEFT}" y="{TOP - 8}">{escape(y_label)}</text>')
    parts.append("</svg>")
    rows = [[x_format(start)] + [number(s.values[i]) for s in series] for i, start in enumerate(starts) if totals[i]]
    legend = [(s.name, colour(i), "") for i, s in enumerate(series)]
    return Chart(Markup("".join(parts)), title, legend, ["hour (UTC)"] + [s.name for s in series], rows)


def grouped_bars(
    title: str, groups: Sequence[str], series: Sequence[Bars], *, y_format: Callable[[float], str] = number,
    y_max: float | None = None,
) -> Chart:  # fmt: skip
    """Side-by-side bars per group (before vs after), each labelled with its value."""
    values = [v for s in series for v in s.values]
    if not groups or not values:
        return _empty(title)
    y = Scale(0, y_max if y_max is not None else nice_upper(max(values)), HEIGHT - BOTTOM, TOP)
    parts = _frame(title, "")
    parts += _y_axis(y, y_format)
    slot = (WIDTH - RIGHT - LEFT) / len(groups)
    bar = min(48.0, slot * 0.8 / len(series))
    for g, group in enumerate(groups):
        centre = LEFT + slot * (g + 0.5)
        first = centre - bar * len(series) / 2
        for index, s in enumerate(series):
            value = s.values[g]
            top = y(value)
            label = f"{group}, {s.name}: {y_format(value)}"
            bx = first + index * bar
            parts.append(
                f'<g class="bar" tabindex="0" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
                f'<rect x="{bx + 1:.1f}" y="{top:.1f}" width="{bar - 2:.1f}" height="{HEIGHT - BOTTOM - top:.1f}" '
                f'fill="{colour(index)}"/><text class="value" x="{bx + bar / 2:.1f}" y="{top - 4:.1f}" '
                f'text-anchor="middle">{escape(y_format(value))}</text></g>'
            )
        parts.append(
            f'<text class="tick" x="{centre:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{escape(_cut(group, int(slot / 7)))}</text>"
        )
    parts.append("</svg>")
    rows = [[group] + [y_format(s.values[g]) for s in series] for g, group in enumerate(groups)]
    legend = [(s.name, colour(i), "") for i, s in enumerate(series)]
    return Chart(Markup("".join(parts)), title, legend, [""] + [s.name for s in series], rows)


def horizontal_bars(title: str, labels: Sequence[str], values: Sequence[float], *, unit: str = "s") -> Chart:
    """One bar per label (time per stage), longest scale first."""
    if not labels or not any(values):
        return _empty(title)
    row_height = 24
    height = TOP + row_height * len(labels) + 8
    left = 90
    x = Scale(0, max(values), left, WIDTH - RIGHT - 50)
    parts = [
        f'<svg class="chart hbars" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        top = TOP + i * row_height
        text = f"{label}: {value:.1f} {unit}"
        parts.append(
            f'<g class="bar" tabindex="0" role="img" aria-label="{escape(text)}"><title>{escape(text)}</title>'
            f'<text class="tick" x="{left - 6}" y="{top + 15}" text-anchor="end">{escape(_cut(label, 16))}</text>'
            f'<rect x="{left}" y="{top + 3}" width="{max(1.0, x(value) - left):.1f}" height="{row_height - 8}" '
            f'fill="{colour(0)}"/><text class="value" x="{x(value) + 4:.1f}" y="{top + 15}">'
            f"{value:.1f} {unit}</text></g>"
        )
    parts.append("</svg>")
    rows = [[label, f"{value:.1f}"] for label, value in zip(labels, values, strict=True)]
    return Chart(Markup("".join(parts)), title, [], ["stage", f"time ({unit})"], rows)


def _empty(title: str) -> Chart:
    return Chart(Markup(""), title, empty=True)


def _frame(title: str, css_class: str) -> list[str]:
    return [
        f'<svg class="chart {css_class}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]


def _y_axis(y: Scale, y_format: Callable[[float], str]) -> list[str]:
    parts = []
    for tick in nice_ticks(y.low, y.high):
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{escape(y_format(tick))}</text>'
        )
    return parts


def _x_axis(x: Scale, time_axis: bool, x_label: str) -> list[str]:
    base = HEIGHT - BOTTOM
    parts = [f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>']
    if time_axis:
        ticks, label = time_ticks(x.low, x.high)
    else:
        # Whole steps only when the axis counts them.
        whole = x.low == int(x.low) and x.high == int(x.high)
        ticks = [t for t in nice_ticks(x.low, x.high, 5) if x.low <= t <= x.high and (not whole or t == int(t))]
        label = number
    taken = -math.inf  # where the last label drawn ends
    for tick in ticks:
        tx = x(tick)
        anchor = "end" if tx > WIDTH - RIGHT - 40 else "start" if tx < LEFT + 40 else "middle"
        text = label(tick)
        width = len(text) * TICK_CHAR_WIDTH
        start = {"start": tx, "middle": tx - width / 2, "end": tx - width}[anchor]
        parts.append(f'<line class="axis" x1="{tx:.1f}" x2="{tx:.1f}" y1="{base}" y2="{base + 4}"/>')
        if start < taken + 6:  # it would run into the label before: the tick stays, unlabelled
            continue
        taken = start + width
        parts.append(f'<text class="tick" x="{tx:.1f}" y="{base + 16}" text-anchor="{anchor}">{escape(text)}</text>')
    if x_label:
        parts.append(
            f'<text class="axis-title" x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">{escape(x_label)}</text>'
        )
    return parts


def _x_format(time_axis: bool, low: float, high: float) -> Callable[[float], str]:
    if not time_axis:
        return number
    if high - low <= 3 * 86400:
        return lambda t: datetime.fromtimestamp(t, UTC).strftime("%d %b %H:%M")
    return lambda t: datetime.fromtimestamp(t, UTC).strftime("%d %b %Y")


def _value_text(p: Point, y_format: Callable[[float], str]) -> str:
    text = y_format(p.y)
    if p.low is not None and p.high is not None:
        text += f" ({_interval_text(p, y_format)})"
    return text + (f", {p.note}" if p.note else "")


def _interval_text(p: Point, y_format: Callable[[float], str]) -> str:
    if p.low is None or p.high is None:
        return ""
    return f"{y_format(p.low)} to {y_format(p.high)}"


def _cut(text: str, limit: int) -> str:
    limit = max(4, limit)
    return text if len(text) <= limit else text[: limit - 1] + "…"
