"""The feedback service: parse and check a rating, store it (idempotent, one per end user), read ratings back.

Works on an `Engine`; each call is its own transaction. Blocking: call it from a worker thread of the gateway.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from feedback.errors import (
    FeedbackNotFound,
    FieldTooLong,
    IdempotencyConflict,
    InteractionNotFound,
    InvalidRating,
    InvalidRequest,
)
from feedback.interaction import as_utc, utcnow
from feedback.keyset import MAX_PAGE, newest_first, next_cursor
from feedback.models import MAX_END_USER_CHARS, MAX_ID_CHARS, feedback, interactions
from feedback.settings import RecordSettings

_RATINGS = {"up": 1, "down": -1, "1": 1, "-1": -1, "+1": 1, "true": 1, "false": -1}
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    id: str
    completion_id: str
    tenant_id: str
    adapter_version: str | None  # the version that produced the rated completion; None: the base model
    rating: int  # +1 or -1
    comment: str | None
    correction: str | None
    end_user: str | None
    idempotency_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def rating_label(self) -> str:
        return "up" if self.rating > 0 else "down"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "feedback",
            "completion_id": self.completion_id,
            "rating": self.rating_label,
            "comment": self.comment,
            "correction": self.correction,
            "user": self.end_user,
            "idempotency_id": self.idempotency_id,
            "adapter_version": self.adapter_version,
            "created_at": int(self.created_at.timestamp()),
            "updated_at": int(self.updated_at.timestamp()),
        }


@dataclass(frozen=True, slots=True)
class FeedbackPage:
    items: list[FeedbackRecord]
    next_cursor: str | None  # pass it back as `cursor` for the next page; None: this was the last


def parse_rating(value: object) -> int:
    """+1 or -1 from 'up'/'down', 1/-1 (number or string) or true/false (JSON bool or string)."""
    if isinstance(value, bool):  # before int: bool is an int
        return 1 if value else -1
    if isinstance(value, int) and value in (1, -1):
        return value
    if isinstance(value, str) and value.strip().lower() in _RATINGS:
        return _RATINGS[value.strip().lower()]
    raise InvalidRating(f"rating must be 'up' or 'down' (or 1/-1, true/false), not {value!r:.40}", param="rating")


def record_feedback(
    engine: Engine,
    *,
    tenant_id: str,
    completion_id: str,
    rating: object,
    comment: str | None = None,
    correction: str | None = None,
    end_user: str | None = None,
    idempotency_id: str | None = None,
    settings: RecordSettings | None = None,
) -> FeedbackRecord:
    """Store a rating of one of the tenant's completions and return it as stored.

    A new rating by the same end user (None counts as one anonymous user) replaces the old one, keeping its id.
    The same `idempotency_id` again with the same body returns the record as it is and stores nothing; with a
    different body it raises IdempotencyConflict. An id stops being remembered once a newer rating by the same
    user replaces the one it stored (each rating row keeps the id of its last write only).
    Raises InvalidRequest (bad rating, oversized field), InteractionNotFound (no such completion, or another
    tenant's), IdempotencyConflict.
    """
    body, key = _checked(completion_id, rating, comment, correction, end_user, idempotency_id, settings)
    # Two requests racing on the same rating (or the same idempotency id) both find nothing and both insert; the
    # loser hits a unique constraint and, on its second try, finds the winner's row.
    for attempt in range(3):
        try:
            return _store(engine, tenant_id, body, key)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def check_feedback(
    *,
    completion_id: str,
    rating: object,
    comment: str | None = None,
    correction: str | None = None,
    end_user: str | None = None,
    idempotency_id: str | None = None,
    settings: RecordSettings | None = None,
) -> None:
    """Raise InvalidRequest for what `record_feedback` would refuse without looking at the database, so that a
    bad request is refused at once rather than after waiting for its interaction to be written."""
    _checked(completion_id, rating, comment, correction, end_user, idempotency_id, settings)


def _checked(
    completion_id: object,
    rating: object,
    comment: object,
    correction: object,
    end_user: object,
    idempotency_id: object,
    settings: RecordSettings | None,
) -> tuple[dict[str, Any], str | None]:
    limits = settings or RecordSettings()
    body = {
        "interaction_id": _text(completion_id, "completion_id", MAX_ID_CHARS, required=True),
        "rating": parse_rating(rating),
        "comment": _text(comment, "comment", limits.feedback_max_comment_chars),
        "correction": _text(correction, "correction", limits.feedback_max_correction_chars),
        "end_user": _text(end_user, "user", MAX_END_USER_CHARS) or "",  # '' is the anonymous user
    }
    return body, _text(idempotency_id, "id", MAX_ID_CHARS)


def _store(engine: Engine, tenant_id: str, body: dict[str, Any], key: str | None) -> FeedbackRecord:
    with engine.begin() as connection:
        if key is not None:
            used = connection.execute(
                select(feedback).where(feedback.c.tenant_id == tenant_id, feedback.c.idempotency_id == key)
            ).first()
            if used is not None:
                if any(getattr(used, name) != value for name, value in body.items()):
                    raise IdempotencyConflict(
                        f"idempotency id {key!r} was already used with a different body", param="id"
                    )
                return _record(used)
        # FOR SHARE (PostgreSQL; nothing on SQLite, whose writers are serialised anyway): a purge or a forget that
        # holds the interaction waits for this rating, or this rating waits for it and then finds nothing; a
        # rating never outlives the interaction it rates.
        served = connection.execute(
            select(interactions.c.tenant_id, interactions.c.adapter_version)
            .where(interactions.c.id == body["interaction_id"])
            .with_for_update(read=True)
        ).first()
        if served is None or served.tenant_id != tenant_id:
            raise InteractionNotFound(f"no completion {body['interaction_id']!r}", param="completion_id")
        now = utcnow()
        current = connection.execute(
            select(feedback.c.id).where(
                feedback.c.interaction_id == body["interaction_id"], feedback.c.end_user == body["end_user"]
            )
        ).first()
        if current is None:
            row_id = f"fb_{uuid.uuid4().hex}"
            connection.execute(
                insert(feedback).values(
                    id=row_id,
                    tenant_id=tenant_id,
                    adapter_version=served.adapter_version,
                    idempotency_id=key,
                    created_at=now,
                    updated_at=now,
                    **body,
                )
            )
        else:
            row_id = current.id
            connection.execute(
                update(feedback)
                .where(feedback.c.id == row_id)
                .values(
                    rating=body["rating"],
                    comment=body["comment"],
                    correction=body["correction"],
                    idempotency_id=key,
                    updated_at=now,
                )
            )
        return _record(connection.execute(select(feedback).where(feedback.c.id == row_id)).one())


def get_feedback(engine: Engine, tenant_id: str, feedback_id: str) -> FeedbackRecord:
    with engine.connect() as connection:
        row = connection.execute(
            select(feedback).where(feedback.c.id == feedback_id, feedback.c.tenant_id == tenant_id)
        ).first()
    if row is None:
        raise FeedbackNotFound(f"no feedback {feedback_id!r}", param="id")
    return _record(row)


def list_feedback(
    engine: Engine,
    *,
    tenant_id: str | None,
    completion_id: str | None = None,
    adapter: str | None = None,
    rating: object = None,
    end_user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> FeedbackPage:
    """Ratings, newest first. `tenant_id` None lists every tenant (admin). `adapter` is a version (`support@2`)
    or an alias (`support`: all its versions). `since` is inclusive, `until` exclusive, on when a rating was
    first given."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(feedback)
    if tenant_id is not None:
        query = query.where(feedback.c.tenant_id == tenant_id)
    if completion_id is not None:
        query = query.where(feedback.c.interaction_id == completion_id)
    if adapter is not None:
        query = query.where(adapter_filter(feedback.c.adapter_version, adapter))
    if rating is not None:
        query = query.where(feedback.c.rating == parse_rating(rating))
    if end_user is not None:
        query = query.where(feedback.c.end_user == end_user)
    if since is not None:
        query = query.where(feedback.c.created_at >= as_utc(since))
    if until is not None:
        query = query.where(feedback.c.created_at < as_utc(until))
    query = newest_first(query, feedback, limit, cursor)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    items = [_record(row) for row in rows[:limit]]
    return FeedbackPage(items, next_cursor(items, more=len(rows) > limit))


def adapter_filter(column: Any, adapter: str) -> Any:
    """`support@2`: that version; `support`: any version of the alias."""
    if "@" in adapter:
        return column == adapter
    return column.startswith(f"{adapter}@", autoescape=True)


def _text(value: object, param: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{param} is required", param=param)
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string", param=param)
    if len(value) > limit:
        raise FieldTooLong(f"{param} is {len(value)} characters long; at most {limit} are accepted", param=param)
    # Refused here rather than by the database (PostgreSQL text takes no NUL; UTF-8 has no lone surrogates).
    if "\x00" in value or (not value.isascii() and _SURROGATES.search(value)):
        raise InvalidRequest(f"{param} has characters that cannot be stored (NUL, a lone surrogate)", param=param)
    return value


def _record(row: Row[Any]) -> FeedbackRecord:
    return FeedbackRecord(
        id=row.id,
        completion_id=row.interaction_id,
        tenant_id=row.tenant_id,
        adapter_version=row.adapter_version,
        rating=row.rating,
        comment=row.comment,
        correction=row.correction,
        end_user=row.end_user or None,
        idempotency_id=row.idempotency_id,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
