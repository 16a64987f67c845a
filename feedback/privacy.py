"""Privacy: forget one end user of a tenant, and purge what is older than a tenant's retention period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, or_, select

from feedback.interaction import as_utc, utcnow
from feedback.models import feedback, interactions


@dataclass(frozen=True, slots=True)
class Deleted:
    interactions: int
    feedback: int


def forget_end_user(engine: Engine, tenant_id: str, end_user: str) -> Deleted:
    """Delete the user's interactions, the ratings of them, and every rating the user gave, in one transaction.

    Interactions still in a writer's queue are written afterwards: flush the writer first (`writer.flush()`).
    """
    if not end_user:
        raise ValueError("end_user is required: '' would mean every anonymous rating")
    theirs = select(interactions.c.id).where(interactions.c.tenant_id == tenant_id, interactions.c.end_user == end_user)
    with engine.begin() as connection:
        # Their interactions locked first (PostgreSQL): a rating of one of them given meanwhile either lands
        # before (and is deleted below) or waits and then finds nothing to rate, so none is left behind.
        connection.execute(theirs.with_for_update())
        ratings = connection.execute(
            delete(feedback).where(
                feedback.c.tenant_id == tenant_id,
                or_(feedback.c.end_user == end_user, feedback.c.interaction_id.in_(theirs)),
            )
        ).rowcount
        served = connection.execute(
            delete(interactions).where(interactions.c.tenant_id == tenant_id, interactions.c.end_user == end_user)
        ).rowcount
    return Deleted(interactions=served, feedback=ratings)


def purge_expired(
    engine: Engine,
    tenant_id: str,
    retention: timedelta,
    *,
    now: datetime | None = None,
    chunk: int = 1000,
) -> Deleted:
    """Delete the tenant's interactions served more than `retention` ago, and their ratings.

    In chunks of `chunk` interactions, each its own transaction, so a large purge never holds locks for long
    (a SQLite writer, PostgreSQL row locks) and can be stopped and run again. Safe to run at the same time in
    several processes (every gateway replica runs it): on PostgreSQL each takes a chunk the others have not locked
    (SKIP LOCKED), so they share the work and never wait on, or deadlock with, one another.
    """
    cutoff = as_utc(now or utcnow()) - retention
    total_served = total_ratings = 0
    while True:
        with engine.begin() as connection:
            ids = (
                connection.execute(
                    select(interactions.c.id)
                    .where(interactions.c.tenant_id == tenant_id, interactions.c.created_at < cutoff)
                    .limit(chunk)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not ids:
                break
            total_ratings += connection.execute(delete(feedback).where(feedback.c.interaction_id.in_(ids))).rowcount
            total_served += connection.execute(delete(interactions).where(interactions.c.id.in_(ids))).rowcount
    return Deleted(interactions=total_served, feedback=total_ratings)
