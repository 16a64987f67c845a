"""Reading the record (feedback/'s tables) for one tenant's adapter alias: rated interactions, and new ratings.

An interaction belongs to an alias when the gateway recorded that alias as the one that served it: asked for by name
(`support`), pinned (`support@3`) or through a key's model map, also while the base model serves an alias that has
no promoted version yet. Read-only: the trainer never writes here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url

from feedback.interaction import as_utc
from feedback.models import feedback, interactions


@dataclass
class Rating:
    rating: int  # +1 up, -1 down
    correction: str | None
    at: datetime  # when it was last given or changed
    user: str = ""  # the end user who rated ('' when the rating named none)


@dataclass
class RatedInteraction:
    """One interaction with every rating it got (one per end user)."""

    id: str
    endpoint: str  # chat | completion
    request: dict[str, Any]  # as sent upstream: retrieved context included
    response_text: str
    outcome: str
    adapter_version: str | None
    created_at: datetime
    ratings: list[Rating] = field(default_factory=list)
    key_id: str = ""  # the API key that made the request
    end_user: str | None = None  # the request's `user` field


def connect(url: str) -> Engine:
    """An engine on the record's database: SQLite (a file) or PostgreSQL (psycopg 3), as the gateway connects."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 in this project, not psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_busy_timeout)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=2, max_overflow=4, connect_args={"connect_timeout": 5})


def _sqlite_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    # The gateway's writer holds the write lock in short bursts; a reader in WAL mode only needs to wait on setup.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def of_alias(alias: str) -> Any:
    """Where-clause: the alias served the interaction (asked for by name, pinned, or through a key's model map)."""
    return interactions.c.alias == alias


def rated_interactions(engine: Engine, tenant: str, alias: str, batch_size: int = 500) -> Iterator[RatedInteraction]:
    """The alias's rated interactions, newest first, each with all its ratings; streamed in constant memory."""
    query = (
        select(
            interactions.c.id,
            interactions.c.endpoint,
            interactions.c.request,
            interactions.c.response_text,
            interactions.c.outcome,
            interactions.c.adapter_version,
            interactions.c.created_at,
            interactions.c.key_id,
            interactions.c.end_user,
            feedback.c.rating,
            feedback.c.correction,
            feedback.c.updated_at,
            feedback.c.end_user.label("rater"),
        )
        .join(feedback, feedback.c.interaction_id == interactions.c.id)
        .where(interactions.c.tenant_id == tenant, feedback.c.tenant_id == tenant, of_alias(alias))
        .order_by(interactions.c.created_at.desc(), interactions.c.id.desc(), feedback.c.updated_at)
    )
    current: RatedInteraction | None = None
    with engine.connect() as connection:
        for row in connection.execution_options(yield_per=batch_size).execute(query):
            if current is None or current.id != row.id:
                if current is not None:
                    yield current
                current = RatedInteraction(
                    id=row.id,
                    endpoint=row.endpoint,
                    request=row.request or {},
                    response_text=row.response_text or "",
                    outcome=row.outcome,
                    adapter_version=row.adapter_version,
                    created_at=as_utc(row.created_at),
                    key_id=row.key_id,
                    end_user=row.end_user,
                )
            current.ratings.append(Rating(row.rating, row.correction, as_utc(row.updated_at), row.rater or ""))
    if current is not None:
        yield current


def count_ratings(engine: Engine, tenant: str, alias: str, since: datetime | None = None) -> int:
    """Ratings of the alias's interactions given or changed at or after `since` (all of them when None)."""
    query = (
        select(func.count())
        .select_from(feedback.join(interactions, feedback.c.interaction_id == interactions.c.id))
        .where(feedback.c.tenant_id == tenant, interactions.c.tenant_id == tenant, of_alias(alias))
    )
    if since is not None:
        query = query.where(feedback.c.updated_at >= as_utc(since))
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()
