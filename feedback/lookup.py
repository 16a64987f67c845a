"""Finding a just-served interaction for feedback: it may still be in a writer's batch, here or on another replica."""

from __future__ import annotations

import anyio
from sqlalchemy import Engine, select

from feedback.models import interactions
from feedback.writer import InteractionWriter


def interaction_tenant(engine: Engine, completion_id: str) -> str | None:
    """The tenant an interaction belongs to, or None when it is not in the database (yet)."""
    with engine.connect() as connection:
        return connection.execute(
            select(interactions.c.tenant_id).where(interactions.c.id == completion_id)
        ).scalar_one_or_none()


async def wait_for_interaction(
    engine: Engine,
    writer: InteractionWriter | None,
    tenant_id: str,
    completion_id: str,
    wait_s: float,
    poll_s: float = 0.05,
) -> bool:
    """True once the tenant's interaction is in the database; False when it is another tenant's, or does not
    appear within `wait_s` (call `record_feedback` either way: it raises InteractionNotFound then).

    One pending in this process's writer is waited for directly; otherwise the database is polled, for an
    interaction that another replica served and has not written yet. If it is False while
    `writer.pending_tenant(completion_id) == tenant_id`, the database is down and the row is spilled: a 503.
    """
    owner = writer.pending_tenant(completion_id) if writer is not None else None
    if writer is not None and owner is not None:
        if owner != tenant_id:
            return False
        if await writer.wait_written(completion_id, wait_s):
            return True
        # Still pending here; but a spill of this process may have been replayed by another one meanwhile.
        return await anyio.to_thread.run_sync(interaction_tenant, engine, completion_id) == tenant_id
    with anyio.move_on_after(wait_s):
        while True:
            found = await anyio.to_thread.run_sync(interaction_tenant, engine, completion_id)
            if found is not None:
                return found == tenant_id
            await anyio.sleep(poll_s)
    # One last look: the deadline may have cut the loop short just before the row arrived.
    return await anyio.to_thread.run_sync(interaction_tenant, engine, completion_id) == tenant_id
