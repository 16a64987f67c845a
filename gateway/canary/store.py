"""Canaries in the store: starting one, the guarded claim that lets one replica decide, ending it, and the counts
per arm read from the record (ratings of the interactions each arm's version served since the canary started).

Starting and ending a canary bump the registry's revision, so every replica's catalog starts or stops the split.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedback.interaction import as_utc
from feedback.models import feedback, interactions
from gateway import registry
from gateway.canary.decision import CanaryPolicy
from gateway.canary.sequential import Arm
from gateway.errors import Conflict, NotFound
from gateway.store.models import Adapter, AdapterVersion, Canary, TrainingRun, utcnow

ACTIVE = ("running", "deciding")
FINAL = ("promoted", "rolled_back", "cancelled")


def start(
    session: Session, adapter: Adapter, version: AdapterVersion, policy: CanaryPolicy, run_id: str | None
) -> Canary:
    """A canary of `version` against the alias's production version (or the base model), as one transaction."""
    if adapter.production_version_id == version.id:
        raise Conflict(f"{adapter.alias}@{version.number} is already in production.", param="version")
    if version.state not in ("registered", "staged"):
        raise Conflict(f"{adapter.alias}@{version.number} is {version.state}; only a new version can go to canary.")
    canary = Canary(
        id="can_" + secrets.token_hex(8),
        tenant_id=adapter.tenant_id,
        adapter_id=adapter.id,
        candidate_version_id=version.id,
        control_version_id=adapter.production_version_id,
        share=policy.share,
        policy=policy.to_json(),
        status="running",
        reason="",
        decision={},
        run_id=run_id,
        claimed_by="",
        lock=adapter.id,  # unique: a second running canary of this alias cannot be inserted
    )
    session.add(canary)
    try:
        registry.bump_revision(session)  # its UPDATE flushes the INSERT first: a second canary fails here
        session.commit()
    except IntegrityError:
        session.rollback()
        running = session.scalar(select(Canary).where(Canary.lock == adapter.id))
        name = f" ({running.id})" if running else ""
        raise Conflict(f"`{adapter.alias}` already has a canary running{name}.", code="canary_running") from None
    return canary


def active(session: Session) -> list[Canary]:
    return list(session.scalars(select(Canary).where(Canary.status.in_(ACTIVE)).order_by(Canary.started_at)))


def latest_per_alias(session: Session) -> list[Canary]:
    """Each alias's newest canary, running or decided (what /metrics shows)."""
    newest = (
        select(Canary.adapter_id, func.max(Canary.started_at).label("started_at")).group_by(Canary.adapter_id)
    ).subquery()
    return list(
        session.scalars(
            select(Canary).join(
                newest, (Canary.adapter_id == newest.c.adapter_id) & (Canary.started_at == newest.c.started_at)
            )
        )
    )


def decisions_by_outcome(session: Session) -> list[tuple[int, str, int]]:
    """(adapter id, final status, how many) over every decided canary."""
    query = (
        select(Canary.adapter_id, Canary.status, func.count())
        .where(Canary.status.in_(FINAL))
        .group_by(Canary.adapter_id, Canary.status)
    )
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


def of_alias(session: Session, adapter: Adapter) -> list[Canary]:
    """The alias's canaries, newest first."""
    query = select(Canary).where(Canary.adapter_id == adapter.id).order_by(Canary.started_at.desc(), Canary.id)
    return list(session.scalars(query))


def current(session: Session, adapter: Adapter) -> Canary:
    """The alias's running canary, else its last one."""
    found = of_alias(session, adapter)
    running = [canary for canary in found if canary.status in ACTIVE]
    if not found:
        raise NotFound(f"`{adapter.alias}` has never had a canary.", param="alias")
    return running[0] if running else found[0]


def claim(session: Session, canary_id: str, replica: str, decision: dict[str, Any], stale_after_s: float) -> bool:
    """Take the right to apply a decision: only one replica wins (a guarded UPDATE). A claim left by a replica that
    stopped before finishing is taken over after `stale_after_s`."""
    now = utcnow()
    stale = now - timedelta(seconds=stale_after_s)
    guarded = (
        update(Canary)
        .where(
            Canary.id == canary_id,
            or_(Canary.status == "running", (Canary.status == "deciding") & (Canary.claimed_at < stale)),
        )
        .values(status="deciding", claimed_at=now, claimed_by=replica[:200], decision=decision)
    )
    won = cast("CursorResult[Any]", session.execute(guarded)).rowcount  # what an UPDATE returns
    session.commit()
    return bool(won == 1)


def release(session: Session, canary_id: str) -> None:
    """The claimed decision could not be applied (an engine refused): back to running, to be decided again."""
    session.execute(update(Canary).where(Canary.id == canary_id, Canary.status == "deciding").values(status="running"))
    session.commit()


def finish(session: Session, canary_id: str, status: str, reason: str, decision: dict[str, Any]) -> Canary:
    """The canary's end, with its evidence; the training run that started it ends with it."""
    canary = session.get(Canary, canary_id)
    assert canary is not None
    canary.status, canary.reason, canary.decision = status, reason[:2000], decision
    canary.decided_at, canary.lock = utcnow(), None
    if canary.run_id:
        run_status = "promoted" if status == "promoted" else "rejected"
        session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == canary.run_id, TrainingRun.status == "canary")
            .values(status=run_status, reason=f"{run_status} by canary {canary.id}: {reason}"[:2000])
        )
    registry.bump_revision(session)
    session.commit()
    return canary


def counts(
    connection: Connection,
    canary: Canary,
    tenant_id: str,
    alias: str,
    candidate: str,
    control: str | None,
    ratings_per_user: int,
) -> tuple[Arm, Arm]:
    """(control, candidate): ratings of the interactions each arm's version served for the alias's name since the
    canary started, each user's first `ratings_per_user` only (users are the split's units). Requests that pinned a
    version (`support@3`) were not split and do not count."""
    version = func.coalesce(interactions.c.adapter_version, "")  # '' is the base model
    unit = func.coalesce(interactions.c.end_user, "key:" + interactions.c.key_id)
    nth = func.row_number().over(partition_by=(version, unit), order_by=(feedback.c.created_at, feedback.c.id))
    ranked = (
        select(version.label("version"), feedback.c.rating, nth.label("nth"))
        .select_from(feedback.join(interactions, feedback.c.interaction_id == interactions.c.id))
        .where(
            interactions.c.tenant_id == tenant_id,
            feedback.c.tenant_id == tenant_id,
            interactions.c.alias == alias,
            interactions.c.created_at >= as_utc(canary.started_at),
            version.in_([candidate, control or ""]),
            ~interactions.c.model_requested.contains("@"),
        )
        .subquery()
    )
    query = (
        select(ranked.c.version, func.count(), func.sum(case((ranked.c.rating > 0, 1), else_=0)))
        .where(ranked.c.nth <= ratings_per_user)
        .group_by(ranked.c.version)
    )
    found = {row[0]: Arm(int(row[1]), int(row[2] or 0)) for row in connection.execute(query)}
    return found.get(control or "", Arm(0, 0)), found.get(candidate, Arm(0, 0))


def elapsed_s(canary: Canary, now: datetime) -> float:
    return (as_utc(now) - as_utc(canary.started_at)).total_seconds()
