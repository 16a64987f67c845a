"""Retention: interactions older than their tenant's `retention_days` (a tenant setting) are purged, with their
ratings, by a background job in every gateway replica. Replicas purging at once share the work (see
`feedback.privacy.purge_expired`), so no replica needs to be elected for it."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import anyio
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from feedback.privacy import Deleted, purge_expired
from gateway import tenants

log = logging.getLogger(__name__)

RETENTION_KEY = "retention_days"  # in a tenant's settings (`PATCH /admin/tenants/{t}`); absent or null: keep all


def retention_of(settings: dict[str, object]) -> timedelta | None:
    """A tenant's retention period from its settings; None to keep everything. ValueError for a bad value."""
    value = settings.get(RETENTION_KEY)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{RETENTION_KEY} must be a number of days, not {value!r:.40}")
    days = float(value)  # ValueError for a string that is not a number
    if not math.isfinite(days) or days <= 0:
        raise ValueError(f"{RETENTION_KEY} must be a positive number of days, not {value!r:.40}")
    return timedelta(days=days)


def purge_once(sessions: sessionmaker[Session], db: Engine, now: datetime | None = None) -> dict[str, Deleted]:
    """Purge every tenant that has a retention period (blocking). Returns what was deleted, per tenant."""
    with sessions() as session:
        periods = {tenant.id: tenant.settings for tenant in tenants.list_tenants(session)}
    purged: dict[str, Deleted] = {}
    for tenant_id, settings in periods.items():
        try:
            retention = retention_of(settings)
        except ValueError as exc:
            log.warning("record: tenant %s: %s; nothing purged", tenant_id, exc)
            continue
        if retention is not None:
            purged[tenant_id] = purge_expired(db, tenant_id, retention, now=now)
    return purged


async def purge_forever(
    sessions: sessionmaker[Session],
    db: Engine,
    interval_s: float,
    on_purged: Callable[[dict[str, Deleted]], None] = lambda _: None,
) -> None:
    """Purge now, then every `interval_s` (jittered by 10%, so replicas started together drift apart)."""
    while True:
        try:
            purged = await anyio.to_thread.run_sync(purge_once, sessions, db)
            for tenant_id, deleted in purged.items():
                if deleted.interactions or deleted.feedback:
                    log.info(
                        "record: purged %d interactions and %d ratings of %s past their retention period",
                        deleted.interactions, deleted.feedback, tenant_id,
                    )  # fmt: skip
            on_purged(purged)
        except Exception:  # the database may be down; the next round tries again
            log.exception("record: retention purge failed")
        await asyncio.sleep(interval_s * random.uniform(0.9, 1.1))
