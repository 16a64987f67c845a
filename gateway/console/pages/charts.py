"""The charts two pages share: 👍 rate per version over time with its Wilson band and promotions marked, and
requests per hour per alias."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from feedback.stats import rating_series, request_series
from gateway import registry
from gateway.console.plots.axes import percent
from gateway.console.plots.charts import Bars, Chart, Line, Marker, Point, line_chart, stacked_bars
from gateway.state import Gateway
from gateway.store.models import Adapter

RATING_DAYS = 30
REQUEST_HOURS = 48


def rating_chart(gw: Gateway, session: Session, tenant_id: str, adapters: list[Adapter], now: datetime) -> Chart:
    """One line per version: its daily 👍 rate, the Wilson 95% interval as a band; a dashed rule per promotion."""
    alias = adapters[0].alias if len(adapters) == 1 else None
    since = now - timedelta(days=RATING_DAYS)
    buckets = rating_series(gw.db, tenant_id, since=since, alias=alias)
    by_version: dict[str, list[Point]] = {}
    for bucket in buckets:
        low, high = bucket.interval or (None, None)
        name = bucket.adapter_version or gw.settings.public_model_name
        by_version.setdefault(name, []).append(
            Point(bucket.start.timestamp() + 43200, bucket.up_rate or 0.0, low, high, f"{bucket.ratings} ratings")
        )
    markers = []
    for adapter in adapters:
        numbers = {v.id: v.number for v in registry.list_versions(session, adapter)}
        for promotion in registry.list_promotions(session, adapter):
            created = promotion.created_at.timestamp()
            if created >= since.timestamp() and promotion.to_version_id in numbers:
                verb = "rollback to" if promotion.kind == "rollback" else "promoted"
                markers.append(Marker(created, f"{verb} {adapter.alias}@{numbers[promotion.to_version_id]}"))
    lines = [Line(name, points) for name, points in sorted(by_version.items())]
    what = alias or "each version"
    return line_chart(
        f"Thumbs-up rate per version, per day, last {RATING_DAYS} days ({what}), with its 95% interval",
        lines,
        y_format=percent,
        y_range=(0.0, 1.0),
        markers=markers,
        css_class="rating-chart",
    )


def request_chart(gw: Gateway, tenant_id: str, now: datetime, alias: str | None = None) -> Chart:
    """Requests per hour over the last two days, stacked by alias."""
    hour = 3600
    end = int(now.timestamp()) // hour * hour
    starts = [float(end - hour * i) for i in range(REQUEST_HOURS - 1, -1, -1)]
    buckets = request_series(gw.db, tenant_id, since=datetime.fromtimestamp(starts[0], now.tzinfo), bucket_s=hour)
    names = sorted({b.alias or gw.settings.public_model_name for b in buckets if alias is None or b.alias == alias})
    values = {name: [0.0] * len(starts) for name in names}
    index = {start: i for i, start in enumerate(starts)}
    for bucket in buckets:
        name = bucket.alias or gw.settings.public_model_name
        slot = index.get(bucket.start.timestamp())
        if name in values and slot is not None:
            values[name][slot] += bucket.requests
    return stacked_bars(
        f"Requests per hour, last {REQUEST_HOURS} hours" + (f" ({alias})" if alias else ", by alias"),
        starts,
        hour,
        [Bars(name, values[name]) for name in names],
    )
