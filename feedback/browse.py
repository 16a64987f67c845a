"""The record read back for a person: a tenant's interactions filtered and paged, newest first, and one interaction
with every rating it got. Blocking: call it from a worker thread of the gateway."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, Row, case, exists, func, not_, select

from feedback.errors import InteractionNotFound, InvalidRequest
from feedback.interaction import as_utc
from feedback.keyset import MAX_PAGE, newest_first, next_cursor
from feedback.models import feedback, interactions
from feedback.ratings import FeedbackRecord, list_feedback

RatingFilter = Literal["up", "down", "rated", "unrated"]
RATING_FILTERS: tuple[str, ...] = ("up", "down", "rated", "unrated")


@dataclass(frozen=True, slots=True)
class InteractionSummary:
    """One line of the list: enough to pick the interaction to open."""

    id: str
    alias: str | None
    adapter_version: str | None  # None: the base model
    end_user: str | None
    prompt: str  # the last user message (or the text prompt)
    response_text: str
    outcome: str
    latency_ms: float
    created_at: datetime
    up: int  # thumbs-up it got
    down: int


@dataclass(frozen=True, slots=True)
class InteractionDetail:
    summary: InteractionSummary
    model_requested: str
    endpoint: str
    request: dict[str, Any]  # as sent upstream, retrieved context included
    params: dict[str, Any]
    finish_reason: str | None
    usage: dict[str, Any] | None
    retrieved: list[Any]  # the chunks injected: ids, sources, scores
    stream: bool
    error: str | None
    ratings: list[FeedbackRecord]  # newest first


@dataclass(frozen=True, slots=True)
class InteractionPage:
    items: list[InteractionSummary]
    next_cursor: str | None


def list_interactions(
    engine: Engine,
    tenant_id: str,
    *,
    alias: str | None = None,
    adapter_version: str | None = None,
    rating: str | None = None,
    end_user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> InteractionPage:
    """The tenant's interactions, newest first. `rating`: `up` / `down` (got at least one such rating), `rated`,
    `unrated`. `since` inclusive, `until` exclusive, on when the interaction was served."""
    if rating is not None and rating not in RATING_FILTERS:
        raise InvalidRequest(f"rating must be one of {', '.join(RATING_FILTERS)}, not {rating!r:.40}", param="rating")
    limit = max(1, min(limit, MAX_PAGE))
    query = _summaries().where(interactions.c.tenant_id == tenant_id)
    if alias is not None:
        query = query.where(interactions.c.alias == alias)
    if adapter_version is not None:
        query = query.where(interactions.c.adapter_version == adapter_version)
    if rating is not None:
        query = query.where(_rating_filter(rating))
    if end_user is not None:
        query = query.where(interactions.c.end_user == end_user)
    if since is not None:
        query = query.where(interactions.c.created_at >= as_utc(since))
    if until is not None:
        query = query.where(interactions.c.created_at < as_utc(until))
    query = newest_first(query, interactions, limit, cursor)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    items = [_summary(row) for row in rows[:limit]]
    return InteractionPage(items, next_cursor(items, more=len(rows) > limit))


def get_interaction(engine: Engine, tenant_id: str, interaction_id: str) -> InteractionDetail:
    """One interaction and its ratings; another tenant's is not found, as one that does not exist."""
    columns = [
        interactions.c.model_requested,
        interactions.c.endpoint,
        interactions.c.request,
        interactions.c.params,
        interactions.c.finish_reason,
        interactions.c.usage,
        interactions.c.retrieved,
        interactions.c.stream,
        interactions.c.error,
    ]
    query = _summaries(*columns).where(interactions.c.id == interaction_id, interactions.c.tenant_id == tenant_id)
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        raise InteractionNotFound(f"no completion {interaction_id!r}", param="completion_id")
    ratings = list_feedback(engine, tenant_id=tenant_id, completion_id=interaction_id, limit=MAX_PAGE).items
    return InteractionDetail(
        summary=_summary(row),
        model_requested=row.model_requested,
        endpoint=row.endpoint,
        request=row.request or {},
        params=row.params or {},
        finish_reason=row.finish_reason,
        usage=row.usage,
        retrieved=list(row.retrieved or []),
        stream=row.stream,
        error=row.error,
        ratings=ratings,
    )


def last_prompt(request: dict[str, Any]) -> str:
    """The last user message of a chat request, or a completion's prompt, as text."""
    if "messages" in request:
        for message in reversed(request.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return message_text(message.get("content"))
        return ""
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def message_text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else json.dumps(content)


def _summaries(*more: Any) -> Any:
    votes = (
        select(
            feedback.c.interaction_id,
            func.sum(case((feedback.c.rating > 0, 1), else_=0)).label("up"),
            func.sum(case((feedback.c.rating < 0, 1), else_=0)).label("down"),
        )
        .group_by(feedback.c.interaction_id)
        .subquery()
    )
    return select(
        interactions.c.id,
        interactions.c.alias,
        interactions.c.adapter_version,
        interactions.c.end_user,
        interactions.c.request,
        interactions.c.response_text,
        interactions.c.outcome,
        interactions.c.latency_ms,
        interactions.c.created_at,
        func.coalesce(votes.c.up, 0).label("up"),
        func.coalesce(votes.c.down, 0).label("down"),
        *more,
    ).outerjoin(votes, votes.c.interaction_id == interactions.c.id)


def _rating_filter(rating: str) -> Any:
    rated = feedback.c.interaction_id == interactions.c.id
    if rating == "up":
        return exists().where(rated, feedback.c.rating > 0)
    if rating == "down":
        return exists().where(rated, feedback.c.rating < 0)
    if rating == "rated":
        return exists().where(rated)
    return not_(exists().where(rated))


def _summary(row: Row[Any]) -> InteractionSummary:
    return InteractionSummary(
        id=row.id,
        alias=row.alias,
        adapter_version=row.adapter_version,
        end_user=row.end_user,
        prompt=last_prompt(row.request or {}),
        response_text=row.response_text,
        outcome=row.outcome,
        latency_ms=row.latency_ms,
        created_at=as_utc(row.created_at),
        up=int(row.up),
        down=int(row.down),
    )
