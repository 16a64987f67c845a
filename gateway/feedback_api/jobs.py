"""The record's background jobs: the stats refresher behind the Prometheus feedback metrics, and the retention
purge."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from feedback.privacy import Deleted
from gateway.feedback_api.retention import purge_forever
from gateway.feedback_api.stats_cache import StatsCache
from gateway.state import Gateway


def start_jobs(gw: Gateway) -> list[asyncio.Task[None]]:
    """The stats refresher and the retention purge, as tasks the gateway cancels when it stops."""
    record = gw.settings.record
    stats = StatsCache(gw.db, gw.settings.public_model_name)
    gw.metrics.watch(stats.collect)
    purged = Counter(
        "loraflow_record_purged_rows", "Rows deleted past their tenant's retention period.", ["table"],
        registry=gw.metrics.registry,
    )  # fmt: skip

    def count(deleted: dict[str, Deleted]) -> None:
        purged.labels("interactions").inc(sum(d.interactions for d in deleted.values()))
        purged.labels("feedback").inc(sum(d.feedback for d in deleted.values()))

    return [
        asyncio.create_task(stats.run(record.stats_refresh_s), name="record-stats"),
        asyncio.create_task(purge_forever(gw.sessions, gw.db, record.purge_interval_s, count), name="record-retention"),
    ]
