"""What the gateway installs and starts for the record's APIs: CORS for browser widgets, the stats refresher
behind the Prometheus feedback metrics, and the retention purge."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import FastAPI
from prometheus_client import Counter
from starlette.middleware.cors import CORSMiddleware

from feedback.privacy import Deleted
from gateway.record_api.retention import purge_forever
from gateway.record_api.stats_cache import StatsCache
from gateway.recording import FEEDBACK_TOKEN_HEADER
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.app import Gateway


def add_cors(app: FastAPI, settings: Settings) -> None:
    """Let the configured origins call the gateway from a browser, and read the feedback token of a response."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type"],
        # No cookies: every call carries its bearer (a key, or a feedback token), so credentials stay off.
        allow_credentials=False,
        expose_headers=[FEEDBACK_TOKEN_HEADER, "x-request-id", "x-loraflow-model", "retry-after"],
    )


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
