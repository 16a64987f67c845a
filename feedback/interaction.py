"""`Interaction`: one completion served, as the gateway hands it to the writer (cheap to build on the request path)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware, in UTC. A naive value is taken as UTC: SQLite gives naive datetimes back, and stores what it is
    given without the zone, so every time goes in and comes out through here."""
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(slots=True)
class Interaction:
    """One chat or text completion, streamed or not, whatever its outcome.

    `request` holds what was sent upstream, retrieved context included, so an export replays the prompt exactly
    as it was served: `{"messages": [...]}` for chat (an injected system message stays where it was put) or
    `{"prompt": "..."}` for text completions. `retrieved` only describes the chunks (ids, sources, scores).
    `response_text` is the text of choice 0, assembled from the stream for streamed calls.
    """

    id: str  # the completion id the client received: chatcmpl-..., cmpl-...
    tenant_id: str
    key_id: str
    model_requested: str  # `model` as the client sent it
    adapter_version: str | None  # public name of the version served (`support@2`); None: the base model
    endpoint: str  # chat | completion
    request: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, max_tokens, stop, seed, ...
    response_text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None  # time to first token; None when no token came
    end_user: str | None = None  # the OpenAI `user` field
    metadata: dict[str, Any] = field(default_factory=dict)  # the OpenAI `metadata` the client sent
    retrieved: list[Any] = field(default_factory=list)
    stream: bool = False
    outcome: str = "completed"  # completed | client_disconnected | upstream_error
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)  # when the request arrived
    completed_at: datetime | None = None  # when the last byte went out (or the client went away)
    alias: str | None = None  # the alias that served it (`support`), whatever the request called it

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the spill file's line)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["created_at"] = self.created_at.isoformat()
        data["completed_at"] = self.completed_at.isoformat() if self.completed_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Interaction:
        data = dict(data)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        if data.get("completed_at"):
            data["completed_at"] = datetime.fromisoformat(data["completed_at"])
        return cls(**{name: data[name] for name in _FIELDS if name in data})


_FIELDS = tuple(f.name for f in fields(Interaction))
