"""Finding a just-served interaction for feedback, here or written by another replica."""

from __future__ import annotations

import asyncio
import threading

from feedback.lookup import interaction_tenant, wait_for_interaction


def test_wait_for_interaction_polls_for_another_replicas_row(db, seed, make_interaction, make_writer):
    writer = make_writer()
    late = make_interaction(tenant_id="acme")
    threading.Timer(0.3, seed, args=(late,)).start()  # another replica writes it a moment later

    async def scenario():
        return (
            await wait_for_interaction(db, writer, "acme", late.id, wait_s=5),
            await wait_for_interaction(db, writer, "globex", late.id, wait_s=0.2),
            await wait_for_interaction(db, None, "acme", "chatcmpl-missing", wait_s=0.2),
        )

    assert asyncio.run(scenario()) == (True, False, False)
    assert interaction_tenant(db, late.id) == "acme"


def test_wait_for_interaction_waits_on_this_writer(db, make_interaction, make_writer):
    writer = make_writer(flush_interval_s=0.2)
    mine = make_interaction(tenant_id="acme")
    writer.submit(mine)

    async def scenario():
        other_tenant = await wait_for_interaction(db, writer, "globex", mine.id, wait_s=1)
        writer.start()
        return other_tenant, await wait_for_interaction(db, writer, "acme", mine.id, wait_s=5)

    assert asyncio.run(scenario()) == (False, True)
