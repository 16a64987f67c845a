"""Per adapter version: interactions served, ratings, thumbs-up rate with a Wilson 95% interval (SQL aggregates)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func, select

from feedback.interaction import as_utc
from feedback.models import feedback, interactions

Z_95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class AdapterStats:
    tenant_id: str
    adapter_version: str | None  # None: the base model
    interactions: int
    ratings: int
    up: int

    @property
    def down(self) -> int:
        return self.ratings - self.up

    @property
    def up_rate(self) -> float | None:
        return self.up / self.ratings if self.ratings else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """Wilson score 95% interval of the thumbs-up rate; None without ratings."""
        return wilson_interval(self.up, self.ratings)

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval or (None, None)
        return {
            "tenant_id": self.tenant_id,
            "adapter_version": self.adapter_version,
            "interactions": self.interactions,
            "ratings": self.ratings,
            "up": self.up,
            "down": self.down,
            "up_rate": self.up_rate,
            "up_rate_low": low,
            "up_rate_high": high,
        }


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval: unlike the normal approximation it stays inside [0, 1] and is honest for the
    small counts a new adapter version has."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def adapter_stats(
    engine: Engine,
    tenant_id: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AdapterStats]:
    """One entry per (tenant, adapter version) with interactions or ratings; `tenant_id` None: every tenant
    (for Prometheus). `since`/`until` bound when an interaction was served and when a rating was first given."""
    served = select(interactions.c.tenant_id, interactions.c.adapter_version, func.count().label("n")).group_by(
        interactions.c.tenant_id, interactions.c.adapter_version
    )
    rated = select(
        feedback.c.tenant_id,
        feedback.c.adapter_version,
        func.count().label("n"),
        func.coalesce(func.sum(case((feedback.c.rating > 0, 1), else_=0)), 0).label("up"),
    ).group_by(feedback.c.tenant_id, feedback.c.adapter_version)
    if tenant_id is not None:
        served = served.where(interactions.c.tenant_id == tenant_id)
        rated = rated.where(feedback.c.tenant_id == tenant_id)
    if since is not None:
        served = served.where(interactions.c.created_at >= as_utc(since))
        rated = rated.where(feedback.c.created_at >= as_utc(since))
    if until is not None:
        served = served.where(interactions.c.created_at < as_utc(until))
        rated = rated.where(feedback.c.created_at < as_utc(until))
    counts: dict[tuple[str, str | None], list[int]] = {}
    with engine.connect() as connection:
        for row in connection.execute(served):
            counts.setdefault((row.tenant_id, row.adapter_version), [0, 0, 0])[0] = row.n
        for row in connection.execute(rated):
            entry = counts.setdefault((row.tenant_id, row.adapter_version), [0, 0, 0])
            entry[1], entry[2] = row.n, int(row.up)
    return [
        AdapterStats(tenant, version, n, ratings, up)
        for (tenant, version), (n, ratings, up) in sorted(
            counts.items(), key=lambda item: (item[0][0], item[0][1] or "")
        )
    ]
