"""The interaction writer: every accepted row reaches the database exactly once, through outages and restarts."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from feedback.errors import RecordBackpressure


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_every_submitted_interaction_becomes_exactly_one_row(make_writer, make_interaction, count_rows):
    writer = make_writer()
    writer.start()
    for _ in range(1050):
        writer.submit(make_interaction())
    assert writer.flush(timeout=30)
    assert count_rows() == 1050
    stats = writer.stats()
    assert (stats.accepted, stats.written, stats.spilled, stats.queued, stats.pending) == (1050, 1050, 0, 0, 0)
    assert stats.batches >= 11  # batch_size 100


def test_the_row_reads_back_as_it_was_submitted(db, make_writer, make_interaction):
    from sqlalchemy.orm import Session

    from feedback.models import InteractionRow

    original = make_interaction(metadata={"ticket": 7}, retrieved=[{"chunk": "c1", "score": 0.5}], stream=True)
    writer = make_writer()
    writer.start()
    writer.submit(original)
    assert writer.flush(timeout=10)
    with Session(db) as session:
        row = session.get(InteractionRow, original.id)
    assert row is not None
    assert row.request == original.request and row.usage == original.usage and row.metadata_ == {"ticket": 7}
    assert row.retrieved == [{"chunk": "c1", "score": 0.5}] and row.stream is True
    assert row.created_at.replace(tzinfo=None) == original.created_at.replace(tzinfo=None)


def test_the_same_id_twice_is_one_row(make_writer, make_interaction, count_rows):
    writer = make_writer()
    writer.start()
    first = [make_interaction() for _ in range(30)]
    for interaction in first:
        writer.submit(interaction)
    assert writer.flush(timeout=10)
    # Replays resend rows that are already there, in batches mixed with new ones, and within one batch.
    for interaction in [*first, *(make_interaction() for _ in range(20)), first[0]]:
        writer.submit(interaction)
    assert writer.flush(timeout=10)
    assert count_rows() == 50
    assert writer.stats().pending == 0


def test_close_writes_everything_still_queued(make_writer, make_interaction, count_rows):
    writer = make_writer(flush_interval_s=5.0)  # rows would linger in memory without close()
    writer.start()
    for _ in range(250):
        writer.submit(make_interaction())
    assert writer.close(timeout=20)
    assert count_rows() == 250


def test_rows_with_nul_or_lone_surrogates_are_stored_scrubbed(make_writer, make_interaction, count_rows):
    writer = make_writer()
    writer.start()
    bad = make_interaction(response_text="a\x00b\ud800c", request={"messages": [{"role": "user", "content": "\ud83d"}]})
    for interaction in [make_interaction(), bad, make_interaction()]:
        writer.submit(interaction)
    assert writer.flush(timeout=10)
    assert count_rows() == 3
    assert writer.stats().rejected == 0


def test_an_outage_spills_and_the_spill_is_replayed_after(make_writer, make_interaction, count_rows, outage, tmp_path):
    writer = make_writer()
    writer.start()
    for _ in range(100):
        writer.submit(make_interaction())
    assert writer.flush(timeout=10)
    with outage():
        burst = [make_interaction(tenant_id="acme") for _ in range(300)]  # while the database is away
        for interaction in burst:
            writer.submit(interaction)
        assert writer.flush(timeout=20)  # flushed = on disk, fsync'd
        stats = writer.stats()
        assert stats.spilling and stats.spilled >= 300 and stats.last_error
        assert list((tmp_path / "spill").glob("interactions-*.jsonl"))
        assert writer.pending_tenant(burst[-1].id) == "acme"  # spilled is still pending: not in the database
    wait_until(lambda: writer.stats().pending == 0)
    assert count_rows() == 400
    stats = writer.stats()
    assert not stats.spilling and stats.replayed >= 300
    wait_until(lambda: not list((tmp_path / "spill").glob("interactions-*.jsonl")))


def test_an_outage_in_the_middle_of_a_burst_loses_nothing(make_writer, make_interaction, count_rows, outage):
    writer = make_writer()
    writer.start()
    burst = [make_interaction() for _ in range(1500)]

    def submit_all() -> None:  # the request path, at ~1,000 completions/s, unaware of the outage
        for interaction in burst:
            writer.submit(interaction)
            time.sleep(0.001)

    requests = threading.Thread(target=submit_all)
    requests.start()
    time.sleep(0.3)
    with outage():
        time.sleep(0.6)
    requests.join()
    assert writer.flush(timeout=20)
    wait_until(lambda: writer.stats().pending == 0)
    assert count_rows() == 1500
    stats = writer.stats()
    assert stats.spilled > 0 and stats.replayed > 0 and stats.backpressure == 0


def test_a_spill_left_by_a_crashed_process_is_replayed_at_the_next_start(
    make_writer, make_interaction, count_rows, outage, tmp_path
):
    spill = tmp_path / "spill"
    with outage():
        first = make_writer(spill_dir=spill)
        first.start()
        for _ in range(120):
            first.submit(make_interaction())
        assert first.flush(timeout=20)
        assert first.close(timeout=10)  # the process goes away with the database still down: nothing in memory
    assert count_rows() == 0
    second = make_writer(spill_dir=spill)
    second.start()
    wait_until(lambda: second.stats().replayed == 120)
    assert count_rows() == 120
    wait_until(lambda: not list(spill.glob("interactions-*.jsonl")))


def test_a_spill_file_in_use_by_a_live_writer_is_left_alone(
    make_writer, make_interaction, count_rows, outage, tmp_path
):
    spill = tmp_path / "spill"
    with outage():
        live = make_writer(spill_dir=spill, retry_interval_s=60)  # keeps its file open and locked
        live.start()
        for _ in range(10):
            live.submit(make_interaction())
        assert live.flush(timeout=10)
    other = make_writer(spill_dir=spill)
    other.start()
    time.sleep(0.5)
    assert other.stats().replayed == 0 and count_rows() == 0
    live.close(timeout=10)  # releases the file: the next start replays it
    third = make_writer(spill_dir=spill)
    third.start()
    wait_until(lambda: count_rows() == 10)


def test_back_pressure_when_even_the_spill_fails_and_nothing_accepted_is_lost(
    make_writer, make_interaction, count_rows, outage, tmp_path
):
    not_a_directory = tmp_path / "spill"
    not_a_directory.write_text("a file where the spill directory should be")
    writer = make_writer(spill_dir=not_a_directory, max_queue=200)
    writer.start()
    accepted = 0
    with outage():
        with pytest.raises(RecordBackpressure):
            for _ in range(10_000):
                writer.admit()  # what the gateway does before serving each completion
                writer.submit(make_interaction())
                accepted += 1
                time.sleep(0.0005)
        writer.submit(make_interaction())  # one admitted before the queue filled is still taken
        accepted += 1
        assert writer.stats().backpressure >= 1
    not_a_directory.unlink()
    assert writer.flush(timeout=30)
    wait_until(lambda: writer.stats().pending == 0)
    assert count_rows() == accepted
    assert accepted >= 200


def test_wait_written_and_pending_tenant(make_writer, make_interaction):
    writer = make_writer(flush_interval_s=0.3)
    interaction = make_interaction(tenant_id="acme")
    writer.submit(interaction)  # not started yet: pending
    assert writer.pending_tenant(interaction.id) == "acme"
    assert writer.pending_tenant("chatcmpl-unknown") is None

    async def scenario() -> tuple[bool, bool, bool]:
        too_soon = await writer.wait_written(interaction.id, timeout=0.05)
        writer.start()
        written = await writer.wait_written(interaction.id, timeout=10)
        unknown = await writer.wait_written("chatcmpl-unknown", timeout=0.01)
        return too_soon, written, unknown

    assert asyncio.run(scenario()) == (False, True, True)
    assert writer.pending_tenant(interaction.id) is None


def test_disabled_writer_records_nothing(make_writer, make_interaction, count_rows):
    writer = make_writer(enabled=False)
    writer.start()
    writer.submit(make_interaction())
    assert writer.flush(timeout=1)
    assert count_rows() == 0


def test_a_row_submitted_after_close_is_spilled_for_the_next_start(make_writer, make_interaction, count_rows, tmp_path):
    first = make_writer(spill_dir=tmp_path / "spill")
    never_started = make_interaction()
    first.submit(never_started)  # queued, and the thread never ran
    assert first.close(timeout=5)
    first.submit(make_interaction())  # a request that outlived shutdown
    assert count_rows() == 0
    second = make_writer(spill_dir=tmp_path / "spill")
    second.start()
    wait_until(lambda: count_rows() == 2)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are a POSIX (Linux) feature")
@pytest.mark.parametrize("nice", [0, 10])
def test_the_writer_thread_yields_the_core_to_requests(make_writer, make_interaction, count_rows, nice):
    before = os.getpriority(os.PRIO_PROCESS, 0)
    writer = make_writer(writer_nice=nice)
    writer.start()
    writer.submit(make_interaction())
    assert writer.flush(timeout=10) and count_rows() == 1
    thread = writer._thread
    assert thread is not None and thread.native_id is not None
    assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == max(before, nice)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # the thread serving requests keeps its priority
