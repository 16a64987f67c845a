"""The interactions page: the record filtered by alias, version, rating, user and time, and one interaction opened
with its messages, answer, ratings (comments, corrections) and the sources retrieved for it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from feedback.browse import RATING_FILTERS, get_interaction, list_interactions, message_text
from gateway import registry
from gateway.errors import BadRequest
from gateway.state import Gateway

FILTERS = ("alias", "version", "rating", "user", "since", "until")


def interactions_page(gw: Gateway, tenant_id: str, query: dict[str, str]) -> dict[str, Any]:
    filters = {name: (query.get(name) or "").strip() for name in FILTERS}
    page = list_interactions(
        gw.db,
        tenant_id,
        alias=filters["alias"] or None,
        adapter_version=filters["version"] or None,
        rating=filters["rating"] or None,
        end_user=filters["user"] or None,
        since=_time(filters["since"], "since"),
        until=_time(filters["until"], "until"),
        limit=50,
        cursor=query.get("cursor") or None,
    )
    with gw.sessions() as session:
        aliases = [a.alias for a in registry.list_adapters(session, tenant_id)]
    more = {**{k: v for k, v in filters.items() if v}, "cursor": page.next_cursor} if page.next_cursor else None
    return {"filters": filters, "page": page, "aliases": aliases, "ratings": RATING_FILTERS, "next_query": more}


def interaction_page(gw: Gateway, tenant_id: str, interaction_id: str) -> dict[str, Any]:
    detail = get_interaction(gw.db, tenant_id, interaction_id)
    request = detail.request
    if "messages" in request:
        messages = [
            {"role": str(m.get("role", "")), "text": message_text(m.get("content"))}
            for m in request.get("messages") or []
            if isinstance(m, dict)
        ]
    else:
        messages = [{"role": "prompt", "text": str(request.get("prompt", ""))}]
    return {"detail": detail, "item": detail.summary, "messages": messages, "sources": detail.retrieved}


def _time(text: str, name: str) -> datetime | None:
    """A date or time from a filter field (`2025-03-01` or `2025-03-01T12:00`), UTC unless it says otherwise."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"`{name}` must be a date or time like 2025-03-01 or 2025-03-01T12:00.", param=name) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
