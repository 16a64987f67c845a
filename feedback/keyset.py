"""Keyset pagination, newest first, for the record's lists (interactions, ratings).

A page's cursor holds its last row's `(created_at, id)`; the next page starts strictly after it, so rows written
meanwhile never shift or repeat a page, and a deep page costs what the first does (an index range, no OFFSET).

    query = newest_first(select(feedback).where(...), feedback, limit, cursor)
    rows = connection.execute(query).all()
    items = [...rows[:limit]]
    return Page(items, next_cursor(items, more=len(rows) > limit))
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, Table, and_, or_

from feedback.errors import InvalidCursor
from feedback.interaction import as_utc

MAX_PAGE = 1000


class Keyed(Protocol):
    created_at: datetime
    id: str


def newest_first(query: Select[Any], table: Table, limit: int, cursor: str | None) -> Select[Any]:
    """`query` ordered newest first, after `cursor`'s row when given, with one row more than `limit` (to tell whether
    there is a next page)."""
    if cursor is not None:
        after_time, after_id = _decode(cursor)
        query = query.where(
            or_(
                table.c.created_at < after_time,
                and_(table.c.created_at == after_time, table.c.id < after_id),
            )
        )
    return query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)


def next_cursor(items: list[Any], *, more: bool) -> str | None:
    """The cursor of the page after `items` (which are `Keyed`), None on the last page."""
    if not more or not items:
        return None
    last: Keyed = items[-1]
    raw = json.dumps([last.created_at.isoformat(), last.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        return as_utc(datetime.fromisoformat(created_at)), str(row_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor("cursor is not one this list returned", param="cursor") from exc
