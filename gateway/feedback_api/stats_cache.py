"""The number a product team watches, for Prometheus: thumbs-up rate per tenant and adapter version, with counts.

`adapter_stats` scans the record, so it runs in the background every `record.stats_refresh_s` into this cache;
a scrape only reads the last copy (never a database query per scrape, nor on the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine

from feedback.stats import AdapterStats, adapter_stats

log = logging.getLogger(__name__)


class StatsCache:
    def __init__(self, db: Engine, base_model: str) -> None:
        self._db = db
        self._base_model = base_model  # the label of interactions served without an adapter
        self.stats: list[AdapterStats] = []
        self.refreshed_at: float | None = None  # time.time() of the last successful refresh

    def refresh(self) -> None:
        """Recompute from the database (blocking: run it in a thread)."""
        stats = adapter_stats(self._db)
        self.stats, self.refreshed_at = stats, time.time()  # one assignment each: a scrape sees old or new

    async def run(self, interval_s: float) -> None:
        """Refresh forever; a failed round (the database is down) keeps the last copy and tries again."""
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:
                log.exception("record: refreshing the feedback stats failed")
            await asyncio.sleep(interval_s)

    def collect(self) -> list[Metric]:
        labels = ["tenant", "model"]
        interactions = GaugeMetricFamily(
            "loraflow_record_interactions", "Interactions in the record, per tenant and model version.", labels=labels
        )
        ratings = GaugeMetricFamily(
            "loraflow_feedback_ratings", "Ratings in the record, per tenant, model version and rating.",
            labels=[*labels, "rating"],
        )  # fmt: skip
        up_ratio = GaugeMetricFamily(
            "loraflow_feedback_up_ratio", "Thumbs-up share of the ratings (versions with ratings only).", labels=labels
        )
        low = GaugeMetricFamily(
            "loraflow_feedback_up_ratio_low", "Wilson 95% interval of the thumbs-up share: lower bound.", labels=labels
        )
        high = GaugeMetricFamily(
            "loraflow_feedback_up_ratio_high", "Wilson 95% interval of the thumbs-up share: upper bound.", labels=labels
        )
        for entry in self.stats:
            key = [entry.tenant_id, entry.adapter_version or self._base_model]
            interactions.add_metric(key, entry.interactions)
            ratings.add_metric([*key, "up"], entry.up)
            ratings.add_metric([*key, "down"], entry.down)
            if entry.up_rate is not None and entry.interval is not None:
                up_ratio.add_metric(key, entry.up_rate)
                low.add_metric(key, entry.interval[0])
                high.add_metric(key, entry.interval[1])
        age = GaugeMetricFamily("loraflow_feedback_stats_age_seconds", "Seconds since these feedback stats were read.")
        if self.refreshed_at is not None:
            age.add_metric([], time.time() - self.refreshed_at)
        return [interactions, ratings, up_ratio, low, high, age]
