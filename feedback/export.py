"""Dataset export: a tenant's rated interactions as JSONL, in OpenAI's chat fine-tuning format or TRL's KTO format.

chat: `{"messages": [...as served..., {"role": "assistant", "content": answer}]}`, answer = the correction when
      there is one, else the response if it was rated up; a thumbs-down without correction is left out.
kto:  `{"prompt": [...as served...], "completion": [{"role": "assistant", "content": ...}], "label": bool}` (TRL's
      conversational form): the response labelled with its rating, and a correction labelled true.
Text completions use the string forms: `{"prompt": "...", "completion": "..."}` (and `"label"` for KTO).

The prompt is the request as it was sent upstream, so context injected by retrieval stays where it was served.
Only responses that completed are used as answers; a correction is used whatever the outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, Select, func, select

from feedback.interaction import as_utc
from feedback.models import feedback, interactions
from feedback.ratings import adapter_filter

Format = Literal["chat", "kto"]
FORMATS: tuple[Format, ...] = ("chat", "kto")


def count_export(
    engine: Engine,
    tenant_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    adapter: str | None = None,
) -> int:
    """How many ratings the export reads (the progress bar's total; lines written can be fewer)."""
    rows = _query(tenant_id, since, until, adapter).order_by(None).subquery()
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(rows)).scalar_one()


def iter_export(
    engine: Engine,
    tenant_id: str,
    *,
    format: Format = "chat",
    since: datetime | None = None,
    until: datetime | None = None,
    adapter: str | None = None,
    with_ids: bool = False,
    on_progress: Callable[[int], None] | None = None,
    batch_size: int = 500,
) -> Iterator[dict[str, Any]]:
    """Examples, one dict per JSONL line, oldest interaction first, read `batch_size` rows at a time (a server-side
    cursor on PostgreSQL), so an export of any size runs in constant memory.

    `since` (inclusive) and `until` (exclusive) are on when the interaction was served; `adapter` is a version
    (`support@2`) or an alias (`support`). `with_ids` adds `completion_id` and `adapter_version` to each example
    (for a split by id; OpenAI's fine-tuning API refuses unknown keys). `on_progress(rows_read)` is called every
    `batch_size` rows and once at the end.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    make = _chat_examples if format == "chat" else _kto_examples
    read = 0
    # One interaction's examples so far, to skip an identical one from another user's rating of it.
    current_id: str | None = None
    emitted: set[str] = set()
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=batch_size).execute(_query(tenant_id, since, until, adapter))
        for row in result:
            read += 1
            if row.id != current_id:
                current_id, emitted = row.id, set()
            for example in make(row):
                fingerprint = json.dumps(example, sort_keys=True)
                if fingerprint in emitted:
                    continue
                emitted.add(fingerprint)
                if with_ids:
                    example = {**example, "completion_id": row.id, "adapter_version": row.adapter_version}
                yield example
            if on_progress is not None and read % batch_size == 0:
                on_progress(read)
    if on_progress is not None:
        on_progress(read)


def iter_jsonl(engine: Engine, tenant_id: str, **options: Any) -> Iterator[str]:
    """The same as lines of JSONL (each ends with a newline), UTF-8 as is."""
    for example in iter_export(engine, tenant_id, **options):
        yield json.dumps(example, ensure_ascii=False) + "\n"


def _query(tenant_id: str, since: datetime | None, until: datetime | None, adapter: str | None) -> Select[Any]:
    query = (
        select(
            interactions.c.id,
            interactions.c.endpoint,
            interactions.c.request,
            interactions.c.response_text,
            interactions.c.outcome,
            interactions.c.adapter_version,
            feedback.c.rating,
            feedback.c.correction,
        )
        .join(interactions, interactions.c.id == feedback.c.interaction_id)
        .where(feedback.c.tenant_id == tenant_id, interactions.c.tenant_id == tenant_id)
    )
    if since is not None:
        query = query.where(interactions.c.created_at >= as_utc(since))
    if until is not None:
        query = query.where(interactions.c.created_at < as_utc(until))
    if adapter is not None:
        query = query.where(adapter_filter(interactions.c.adapter_version, adapter))
    return query.order_by(interactions.c.created_at, interactions.c.id, feedback.c.end_user)


def _prompt(row: Any) -> list[Any] | str | None:
    """The prompt as served: chat messages, or the text prompt (None when it is not text, e.g. token ids)."""
    request = row.request or {}
    if row.endpoint == "chat":
        messages = request.get("messages")
        return messages if isinstance(messages, list) and messages else None
    prompt = request.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:  # the OpenAI API also takes a batch of one
        prompt = prompt[0]
    return prompt if isinstance(prompt, str) else None


def _answers(row: Any) -> list[tuple[str, bool]]:
    """(answer, label) pairs a rating yields: the response with its rating, and the correction as good."""
    answers = []
    if row.outcome == "completed" and row.response_text:
        answers.append((row.response_text, row.rating > 0))
    if row.correction:
        answers.append((row.correction, True))
    return answers


def _chat_examples(row: Any) -> Iterator[dict[str, Any]]:
    prompt = _prompt(row)
    if prompt is None:
        return
    # The correction wins over the response: it is what should have been said, even under a thumbs-up.
    good = [answer for answer, label in _answers(row) if label]
    if not good:
        return
    answer = good[-1]
    if isinstance(prompt, str):
        yield {"prompt": prompt, "completion": answer}
    else:
        yield {"messages": [*prompt, {"role": "assistant", "content": answer}]}


def _kto_examples(row: Any) -> Iterator[dict[str, Any]]:
    prompt = _prompt(row)
    if prompt is None:
        return
    for answer, label in _answers(row):
        if isinstance(prompt, str):
            yield {"prompt": prompt, "completion": answer, "label": label}
        else:
            yield {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}], "label": label}
