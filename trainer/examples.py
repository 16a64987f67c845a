"""Training records, in the shapes the record exports, turned into the rows TRL's SFT and KTO trainers take.

SFT: `{"messages": [..., {"role": "assistant", "content": answer}]}` (OpenAI chat format) becomes a conversational
prompt-completion row, so the loss falls on the last assistant answer (and its end-of-turn token) only.
KTO: `{"prompt": [messages], "completion": [assistant message], "label": bool}`, or `{"messages": [...],
"label": bool}` whose last message is the rated answer.
Text completions come as `{"prompt": "...", "completion": "..."}` (plus `"label"` for KTO) and train as plain text.
DPO: `{"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message]}`, or OpenAI's preference
format (`input`, `preferred_output`, `non_preferred_output`). A record's `tools` (fine-tuning files) go to the chat
template, and assistant tool calls are kept on their messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

Message = dict[str, Any]


class DataError(ValueError):
    """A training record in a shape the recipes cannot train on."""


def sft_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Prompt-completion rows for `SFTTrainer`; an answer that is empty after stripping is dropped."""
    rows = []
    for index, record in enumerate(records):
        prompt, completion = _split(record, index)
        if _text(completion).strip() or _calls(completion):
            rows.append(_with_tools({"prompt": prompt, "completion": completion}, record))
    return _one_kind(_same_columns(rows))


def kto_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Unpaired preference rows for `KTOTrainer`: prompt, completion, and whether the completion is desirable."""
    rows = []
    for index, record in enumerate(records):
        if not isinstance(record.get("label"), bool):
            raise DataError(f"KTO record {index} needs a boolean 'label' (true: thumbs-up, false: thumbs-down)")
        prompt, completion = _split(record, index)
        rows.append({"prompt": prompt, "completion": completion, "label": record["label"]})
    return _one_kind(rows)


def dpo_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Preference pairs for `DPOTrainer`: a prompt, the preferred answer (`chosen`) and the other (`rejected`)."""
    rows = []
    for index, record in enumerate(records):
        if "input" in record:  # OpenAI's preference format
            source = record["input"] if isinstance(record["input"], Mapping) else {}
            prompt, tools = source.get("messages"), source.get("tools")
            chosen, rejected = record.get("preferred_output"), record.get("non_preferred_output")
        else:
            prompt, tools = record.get("prompt"), record.get("tools")
            chosen, rejected = record.get("chosen"), record.get("rejected")
        if not isinstance(prompt, list) or not prompt:
            raise DataError(f"preference record {index} has no prompt messages")
        answers = []
        for name, answer in (("chosen", chosen), ("rejected", rejected)):
            if not isinstance(answer, list) or len(answer) != 1 or answer[0].get("role") != "assistant":
                raise DataError(f"preference record {index}: `{name}` must be one assistant message")
            answers.append([_message(answer[0], index)])
        row = {"prompt": [_message(m, index) for m in prompt], "chosen": answers[0], "rejected": answers[1]}
        rows.append(_with_tools(row, {"tools": tools}))
    return _same_columns(rows)


def _split(record: Mapping[str, Any], index: int) -> tuple[Any, Any]:
    # Text completions (/v1/completions) were served without a chat template, so they train as plain text.
    if isinstance(record.get("prompt"), str) and isinstance(record.get("completion"), str):
        return record["prompt"], record["completion"]
    if "messages" in record:
        messages = [_message(m, index) for m in record["messages"]]
        prompt, completion = messages[:-1], messages[-1:]
    elif "prompt" in record and "completion" in record:
        prompt = [_message(m, index) for m in record["prompt"]]
        completion = [_message(m, index) for m in record["completion"]]
    else:
        raise DataError(f"record {index} has neither 'messages' nor 'prompt' and 'completion'")
    if len(completion) != 1 or completion[0]["role"] != "assistant":
        raise DataError(f"record {index} must end with exactly one assistant message (the answer to train on)")
    if not prompt:
        raise DataError(f"record {index} has no prompt messages before the answer")
    return prompt, completion


def _message(message: Any, index: int) -> Message:
    # Role and content, and tool calls where there are some: the record's rows then all have the same Arrow schema,
    # and the chat template reads nothing else.
    if not isinstance(message, Mapping) or "role" not in message:
        raise DataError(f"record {index} has a message without a role: {message!r}")
    content = message.get("content") or ""
    if isinstance(content, list):  # OpenAI content parts: keep the text ones, in order
        content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
    if not isinstance(content, str):
        raise DataError(f"record {index} has a message whose content is not text: {content!r}")
    shaped: Message = {"role": str(message["role"]), "content": content}
    for key in ("tool_calls", "tool_call_id"):
        if message.get(key):
            shaped[key] = message[key]
    return shaped


def _calls(completion: str | list[Message]) -> bool:
    return not isinstance(completion, str) and bool(completion[0].get("tool_calls"))


def _with_tools(row: dict[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    # TRL reads a row's `tools` (JSON text: one Arrow type for every row, whatever each tool's schema).
    if record.get("tools"):
        row["tools"] = json.dumps(record["tools"])
    return row


def _same_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A dataset takes its columns from its first row: a column some rows have is given to all.
    if any("tools" in row for row in rows):
        for row in rows:
            row.setdefault("tools", None)
    return rows


def _text(completion: str | list[Message]) -> str:
    return completion if isinstance(completion, str) else completion[0]["content"]


def _one_kind(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # One dataset is either chat or text: the trainers pick the tokenisation from the first row.
    if len({isinstance(row["prompt"], str) for row in rows}) > 1:
        raise DataError("records mix chat messages and plain-text prompts; train them as separate adapters")
    return rows
