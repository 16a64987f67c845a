"""A record for the trainer's tests: a SQLite database with feedback/'s tables, and rated interactions written to it
the way the gateway writes them (`feedback.bulk` for interactions, `feedback.ratings` for ratings)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from feedback.bulk import inserter_for
from feedback.interaction import Interaction
from feedback.models import Base
from feedback.ratings import record_feedback
from trainer.rated_interactions import connect

_ids = itertools.count(1)
_clock = itertools.count(0)


def make_record(path: Path) -> Engine:
    engine = connect(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    return engine


def served(
    engine: Engine,
    prompt: str | list[dict[str, Any]],
    response: str,
    *,
    tenant: str = "acme",
    model: str = "support",
    version: str | None = "support@1",
    alias: str | None = "",
    endpoint: str = "chat",
    outcome: str = "completed",
    interaction_id: str | None = None,
    key_id: str = "key_1",
    end_user: str | None = None,
) -> str:
    """One interaction as the gateway records it; later calls are newer. Returns its id. `alias` is the alias that
    served it; by default the one `model` names, as when no model map is involved."""
    if alias == "":
        alias = model.partition("@")[0]
    interaction_id = interaction_id or f"chatcmpl-{next(_ids):06d}"
    if endpoint == "chat":
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        request: dict[str, Any] = {"messages": messages}
    else:
        request = {"prompt": prompt}
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_clock))
    row = Interaction(
        id=interaction_id, tenant_id=tenant, key_id=key_id, model_requested=model, adapter_version=version,
        alias=alias, endpoint=endpoint, request=request, response_text=response, outcome=outcome, created_at=created,
        end_user=end_user,
    )  # fmt: skip
    inserter_for(engine).insert(engine, [row], 5.0)
    return interaction_id


def rated(engine: Engine, interaction_id: str, rating: str, *, correction: str | None = None, user: str | None = "u1",
          tenant: str = "acme") -> None:  # fmt: skip
    record_feedback(
        engine, tenant_id=tenant, completion_id=interaction_id, rating=rating, correction=correction, end_user=user
    )
