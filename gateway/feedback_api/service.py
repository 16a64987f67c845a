"""The work behind the record's routes: rating a completion that may have been served a moment ago, forgetting an
end user, streaming an export. Every database call runs in a worker thread, never on the event loop."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import datetime
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import OperationalError

from feedback.errors import InvalidToken
from feedback.export import Format, count_export, iter_jsonl
from feedback.lookup import wait_for_interaction
from feedback.privacy import Deleted, forget_end_user
from feedback.ratings import FeedbackRecord, check_feedback, record_feedback
from gateway.errors import Overloaded
from gateway.feedback_api.auth import Rater
from gateway.feedback_api.protocol import FeedbackCreate
from gateway.state import Gateway

EXPORT_ROWS_HEADER = "x-loraflow-export-ratings"  # how many ratings the export reads: a progress bar's total
EXPORT_CHUNK_BYTES = 64 * 1024  # lines are read in a worker thread this much at a time, not one hop per line
FLUSH_TIMEOUT_S = 30.0


def _retry_after_s(gw: Gateway) -> int:
    return max(1, math.ceil(gw.settings.record.retry_interval_s))


@contextlib.contextmanager
def database_errors(gw: Gateway) -> Iterator[None]:
    """A database that is down or locked (PostgreSQL restarting) is a 503 with Retry-After, not a 500."""
    try:
        yield
    except OperationalError as exc:
        raise Overloaded(
            "The record's database is unavailable right now; try again shortly.", retry_after_s=_retry_after_s(gw)
        ) from exc


async def rate(gw: Gateway, rater: Rater, body: FeedbackCreate) -> FeedbackRecord:
    """Store a rating of one of the rater's tenant's completions (see `feedback.ratings.record_feedback`).

    The completion may have been served a moment ago and still be in a writer's batch, here or on another
    replica: it is waited for (`record.lookup_wait_s`). One served here and still not in the database after
    the wait (the database is down and the row spilled) is a 503 to retry, not a 404.
    """
    settings = gw.settings.record
    completion_id = body.completion_id or rater.completion_id
    if rater.completion_id is not None and completion_id != rater.completion_id:
        raise InvalidToken("This feedback token is for another completion.", param="completion_id")
    fields: dict[str, Any] = {
        "completion_id": completion_id,
        "rating": body.rating,
        "comment": body.comment,
        "correction": body.correction,
        "end_user": body.user,
        "idempotency_id": body.id,
    }
    check_feedback(**fields, settings=settings)  # 400 at once, before waiting on anything
    assert completion_id is not None  # check_feedback refuses a missing one
    writer = gw.recorder.writer if gw.recorder is not None else None
    with database_errors(gw):
        found = await wait_for_interaction(gw.db, writer, rater.tenant_id, completion_id, settings.lookup_wait_s)
        if not found and writer is not None and writer.pending_tenant(completion_id) == rater.tenant_id:
            raise Overloaded(
                "This completion is not in the record's database yet (it is unavailable); try again shortly.",
                retry_after_s=_retry_after_s(gw),
            )
        # Not found: record_feedback answers InteractionNotFound (404), the same for another tenant's completion.
        store = functools.partial(record_feedback, gw.db, tenant_id=rater.tenant_id, settings=settings, **fields)
        return await anyio.to_thread.run_sync(store)


async def forget(gw: Gateway, tenant_id: str, user: str) -> Deleted:
    """Delete everything recorded for one end user of a tenant: their interactions, the ratings of those, and
    every rating they gave. Rows still queued in this replica's writer are written first, so none survives."""
    if gw.recorder is not None:
        writer = gw.recorder.writer
        flushed = await anyio.to_thread.run_sync(writer.flush, FLUSH_TIMEOUT_S)
        if not flushed or writer.stats().spilling:
            # Spilled rows would be replayed into the database after the delete, bringing the user back.
            raise Overloaded(
                "The record's database is unavailable, so this user cannot be forgotten completely; try again.",
                retry_after_s=_retry_after_s(gw),
            )
    with database_errors(gw):
        return await anyio.to_thread.run_sync(forget_end_user, gw.db, tenant_id, user)


async def export_response(
    gw: Gateway,
    tenant_id: str,
    *,
    format: Format,
    since: datetime | None,
    until: datetime | None,
    adapter: str | None,
    with_ids: bool,
) -> StreamingResponse:
    """The tenant's dataset as streamed JSONL, read from the database a chunk at a time in a worker thread.

    The first chunk is read before the response starts, so a database that is down is a 503, not a cut stream.
    """
    with database_errors(gw):
        count = functools.partial(count_export, gw.db, tenant_id, since=since, until=until, adapter=adapter)
        total = await anyio.to_thread.run_sync(count)
        lines = _lines(gw, tenant_id, format=format, since=since, until=until, adapter=adapter, with_ids=with_ids)
        try:
            first = await anyio.to_thread.run_sync(_read_chunk, lines)
        except BaseException:
            lines.close()
            raise
    return StreamingResponse(
        _chunks(first, lines),
        media_type="application/x-ndjson",
        headers={
            EXPORT_ROWS_HEADER: str(total),
            "content-disposition": f'attachment; filename="{tenant_id}-{format}.jsonl"',
        },
    )


def _lines(gw: Gateway, tenant_id: str, **options: Any) -> Generator[str, None, None]:
    # A generator of our own, so that it can be closed (and its database connection given back) at any point.
    yield from iter_jsonl(gw.db, tenant_id, **options)


def _read_chunk(lines: Iterator[str]) -> bytes:
    parts: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode()
        parts.append(data)
        size += len(data)
        if size >= EXPORT_CHUNK_BYTES:
            break
    return b"".join(parts)


async def _chunks(first: bytes, lines: Generator[str, None, None]) -> AsyncIterator[bytes]:
    try:
        chunk = first
        while chunk:
            yield chunk
            chunk = await anyio.to_thread.run_sync(_read_chunk, lines)
    finally:
        # Also when the client went away: closing the generator gives its database connection back.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lines.close)
