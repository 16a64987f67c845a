"""Per adapter version: interactions served, ratings, thumbs-up rate with a Wilson 95% interval (SQL aggregates);
the same over time, in buckets, and per tenant totals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Integer, case, cast, func, select

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


# Over time: what the console draws (👍 rate per version per day, requests per alias per hour) and the totals of
# its overview. Bucketed in SQL on whole multiples of `bucket_s` since the Unix epoch (UTC), so any replica and
# both databases cut the same buckets.


@dataclass(frozen=True, slots=True)
class RatingBucket:
    """Ratings of one adapter version first given within one bucket."""

    adapter_version: str | None  # None: the base model
    start: datetime  # the bucket's first instant, UTC
    ratings: int
    up: int

    @property
    def up_rate(self) -> float | None:
        return self.up / self.ratings if self.ratings else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.up, self.ratings)


@dataclass(frozen=True, slots=True)
class RequestBucket:
    """Interactions served under one alias within one bucket."""

    alias: str | None  # None: the base model asked for by name
    start: datetime
    requests: int
    tokens: int


@dataclass(frozen=True, slots=True)
class TenantTotals:
    tenant_id: str
    requests: int
    tokens: int  # usage.total_tokens summed; completions without usage (a client that left early) count 0
    ratings: int
    up: int

    @property
    def up_rate(self) -> float | None:
        return self.up / self.ratings if self.ratings else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.up, self.ratings)


def rating_series(
    engine: Engine,
    tenant_id: str,
    *,
    since: datetime,
    until: datetime | None = None,
    bucket_s: int = 86400,
    alias: str | None = None,
) -> list[RatingBucket]:
    """Ratings and thumbs-up per adapter version per bucket, oldest first; `alias` keeps that alias's versions."""
    bucket = _bucket(engine, feedback.c.created_at, bucket_s).label("bucket")
    query = (
        select(
            feedback.c.adapter_version,
            bucket,
            func.count().label("n"),
            func.coalesce(func.sum(case((feedback.c.rating > 0, 1), else_=0)), 0).label("up"),
        )
        .where(feedback.c.tenant_id == tenant_id, feedback.c.created_at >= as_utc(since))
        .group_by(feedback.c.adapter_version, bucket)
    )
    if until is not None:
        query = query.where(feedback.c.created_at < as_utc(until))
    if alias is not None:
        query = query.where(feedback.c.adapter_version.startswith(f"{alias}@", autoescape=True))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = [RatingBucket(row.adapter_version, _start(row.bucket, bucket_s), row.n, int(row.up)) for row in rows]
    return sorted(found, key=lambda b: (b.start, b.adapter_version or ""))


def request_series(
    engine: Engine, tenant_id: str, *, since: datetime, until: datetime | None = None, bucket_s: int = 3600
) -> list[RequestBucket]:
    """Interactions and tokens per alias per bucket, oldest first."""
    bucket = _bucket(engine, interactions.c.created_at, bucket_s).label("bucket")
    tokens = func.coalesce(func.sum(interactions.c.usage["total_tokens"].as_integer()), 0)
    query = (
        select(interactions.c.alias, bucket, func.count().label("n"), tokens.label("tokens"))
        .where(interactions.c.tenant_id == tenant_id, interactions.c.created_at >= as_utc(since))
        .group_by(interactions.c.alias, bucket)
    )
    if until is not None:
        query = query.where(interactions.c.created_at < as_utc(until))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = [RequestBucket(row.alias, _start(row.bucket, bucket_s), row.n, int(row.tokens)) for row in rows]
    return sorted(found, key=lambda b: (b.start, b.alias or ""))


def tenant_totals(engine: Engine, *, since: datetime, tenant_id: str | None = None) -> dict[str, TenantTotals]:
    """Per tenant since `since`: requests, tokens, ratings and thumbs-up; `tenant_id` None: every tenant."""
    served = select(
        interactions.c.tenant_id,
        func.count().label("n"),
        func.coalesce(func.sum(interactions.c.usage["total_tokens"].as_integer()), 0).label("tokens"),
    ).where(interactions.c.created_at >= as_utc(since))
    rated = select(
        feedback.c.tenant_id,
        func.count().label("n"),
        func.coalesce(func.sum(case((feedback.c.rating > 0, 1), else_=0)), 0).label("up"),
    ).where(feedback.c.created_at >= as_utc(since))
    if tenant_id is not None:
        served = served.where(interactions.c.tenant_id == tenant_id)
        rated = rated.where(feedback.c.tenant_id == tenant_id)
    counts: dict[str, list[int]] = {}
    with engine.connect() as connection:
        for row in connection.execute(served.group_by(interactions.c.tenant_id)):
            counts.setdefault(row.tenant_id, [0, 0, 0, 0])[0:2] = [row.n, int(row.tokens)]
        for row in connection.execute(rated.group_by(feedback.c.tenant_id)):
            counts.setdefault(row.tenant_id, [0, 0, 0, 0])[2:4] = [row.n, int(row.up)]
    return {tenant: TenantTotals(tenant, *values) for tenant, values in sorted(counts.items())}


def _bucket(engine: Engine, column: Any, bucket_s: int) -> Any:
    """The bucket number of a timestamp: whole seconds since the epoch, floor-divided by `bucket_s`."""
    if bucket_s < 1:
        raise ValueError("bucket_s must be at least 1")
    if engine.dialect.name == "sqlite":  # stored as naive UTC text; integer division of positives is the floor
        return cast(func.strftime("%s", column), Integer) // bucket_s
    return func.floor(func.extract("epoch", column) / bucket_s)


def _start(bucket: Any, bucket_s: int) -> datetime:
    return datetime.fromtimestamp(int(bucket) * bucket_s, tz=UTC)
