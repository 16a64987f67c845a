"""Training runs in the store. Starting a run takes the tenant's lock; a run whose trainer stops sending
heartbeats (crashed, killed) loses it after the lease and is marked failed, so it never blocks the next run."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.errors import BadRequest, Conflict, NotFound
from gateway.store.models import TrainingRun, utcnow

# succeeded, cancelled: how the run of a fine-tuning job ends (gateway/fine_tuning/queue.py). held: a person approves
# or rejects the candidate (gateway/training_api/review.py); canary: the canary's end ends it (gateway/canary/).
FINAL = ("promoted", "rejected", "skipped", "failed", "succeeded", "cancelled", "held", "canary")
LOST = "the trainer stopped sending heartbeats (it crashed or was killed); production was not touched"


def start_run(session: Session, tenant_id: str, adapter: str, trigger: str, runner: str, lease_s: float) -> TrainingRun:
    expire_lost(session, lease_s, tenant_id)
    run = TrainingRun(
        id="run_" + secrets.token_hex(8),
        tenant_id=tenant_id,
        adapter=adapter,
        trigger=trigger,
        runner=runner,
        status="running",
        stage="starting",
        progress={},
        reason="",
        report={},
        report_markdown="",
        lock=tenant_id,  # unique: a second running run of this tenant cannot be inserted
    )
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        current = session.scalar(select(TrainingRun).where(TrainingRun.lock == tenant_id))
        name = f" ({current.id}, {current.adapter})" if current else ""
        raise Conflict(f"Tenant `{tenant_id}` is already training{name}.", code="run_in_progress") from None
    return run


def update_run(session: Session, tenant_id: str, run_id: str, changes: dict[str, Any], lease_s: float) -> TrainingRun:
    """Apply a trainer's update (every update is also a heartbeat). A finished run cannot change any more."""
    expire_lost(session, lease_s, tenant_id)
    run = get_run(session, tenant_id, run_id)
    if run.status in FINAL:
        raise Conflict(f"Run {run_id} is already {run.status}: {run.reason}", code="run_finished")
    status = changes.get("status")
    if status is not None and status not in ("running", *FINAL):
        raise BadRequest(f"Unknown status {status!r}.", param="status")
    for name, value in changes.items():
        setattr(run, name, value)
    now = utcnow()
    run.heartbeat_at = now
    if run.status in FINAL:
        run.finished_at = now
        run.lock = None
    session.commit()
    return run


def expire_lost(session: Session, lease_s: float, tenant_id: str | None = None) -> int:
    """Mark running runs without a heartbeat within the lease as failed, releasing their tenants' locks."""
    now = utcnow()
    query = (
        update(TrainingRun)
        .where(TrainingRun.status == "running", TrainingRun.heartbeat_at < now - timedelta(seconds=lease_s))
        .values(status="failed", reason=LOST, lock=None, finished_at=now)
    )
    if tenant_id is not None:
        query = query.where(TrainingRun.tenant_id == tenant_id)
    expired = cast("CursorResult[Any]", session.execute(query)).rowcount  # what an UPDATE returns
    session.commit()
    return expired


def get_run(session: Session, tenant_id: str, run_id: str) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None or run.tenant_id != tenant_id:
        raise NotFound(f"No training run `{run_id}` for tenant `{tenant_id}`.", param="run_id")
    return run


def list_runs(
    session: Session,
    lease_s: float,
    tenant_id: str | None = None,
    adapter: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[TrainingRun]:
    expire_lost(session, lease_s, tenant_id)
    query = select(TrainingRun).order_by(TrainingRun.created_at.desc(), TrainingRun.id).limit(limit)
    if tenant_id is not None:
        query = query.where(TrainingRun.tenant_id == tenant_id)
    if adapter is not None:
        query = query.where(TrainingRun.adapter == adapter)
    if status is not None:  # one status, or several: "promoted,rejected"
        query = query.where(TrainingRun.status.in_(status.split(",")))
    return list(session.scalars(query))
