"""Scorers for evaluation items (held-out from the record, or golden-set lines), chosen by name, each giving 0 to 1.

A golden-set JSONL line: `{"input": "...", "expected": ..., "scorer": "exact"}`. What `expected` holds depends on
the scorer: the answer (`exact`), a substring or list of them (`contains`), a pattern (`regex`, searched anywhere;
anchor it for a full match), a JSON schema (`json_schema`), a JSON value (`json_equal`), a reference answer (`judge`,
optional). An item from a thumbs-down interaction carries the rejected answer in `rejected`: an output that
reproduces it scores 0 whatever its scorer says.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam


class ScorerError(ValueError):
    """An item that cannot be scored: unknown scorer, bad pattern or schema, no judge configured, no verdict."""


class EvalItem(BaseModel):
    """One item both the candidate and the incumbent answer; unknown fields in a golden line are kept."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    input: str | list[dict[str, Any]] = Field(description="A user message, or the chat messages of the request.")
    expected: Any = None
    scorer: str = "exact"
    split: Literal["held_out", "golden", "regression"] = "held_out"
    rejected: str | None = Field(default=None, description="A thumbs-down answer: an output equal to it scores 0.")
    normalize: bool = Field(
        default=True, description="exact/contains/not_rejected: ignore case and runs of whitespace."
    )
    criteria: str | None = Field(default=None, description="judge: what a good answer does, in words.")

    @model_validator(mode="after")
    def _check(self) -> EvalItem:
        if not self.id:
            # A stable id from the content, so paired scores and reports can name the item.
            self.id = hashlib.sha256(json.dumps([self.input, self.expected], sort_keys=True).encode()).hexdigest()[:12]
        if self.scorer in ("exact", "regex") and not isinstance(self.expected, str):
            raise ValueError(f"scorer {self.scorer!r} needs 'expected' to be a string")
        if self.scorer == "regex":
            try:
                re.compile(self.expected)
            except re.error as error:
                raise ValueError(f"bad regular expression {self.expected!r}: {error}") from None
        if self.scorer == "json_schema":
            try:
                jsonschema.validators.validator_for(self.expected).check_schema(self.expected)
            except (jsonschema.SchemaError, TypeError) as error:
                raise ValueError(f"'expected' is not a valid JSON schema: {error}") from None
        if self.scorer == "contains" and not isinstance(self.expected, str | list):
            raise ValueError("scorer 'contains' needs 'expected' to be a string or a list of strings")
        if self.scorer == "not_rejected" and self.rejected is None:
            raise ValueError("scorer 'not_rejected' needs 'rejected'")
        return self

    def messages(self) -> list[ChatCompletionMessageParam]:
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        # Chat messages as the gateway accepted and recorded them, or as a golden set spells them: OpenAI's shape.
        return cast("list[ChatCompletionMessageParam]", self.input)


class Scorer(Protocol):
    def __call__(self, output: str, item: EvalItem) -> float: ...


def normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def _same(a: str, b: str, normalize: bool) -> bool:
    return normalized(a) == normalized(b) if normalize else a.strip() == b.strip()


def exact(output: str, item: EvalItem) -> float:
    return float(_same(output, item.expected, item.normalize))


def contains(output: str, item: EvalItem) -> float:
    needles = [item.expected] if isinstance(item.expected, str) else item.expected
    haystack = normalized(output) if item.normalize else output
    return float(all((normalized(n) if item.normalize else n) in haystack for n in needles))


def regex(output: str, item: EvalItem) -> float:
    return float(re.search(item.expected, output, re.DOTALL) is not None)


def json_schema(output: str, item: EvalItem) -> float:
    value = parse_json(output)
    if value is _INVALID:
        return 0.0
    return float(jsonschema.validators.validator_for(item.expected)(item.expected).is_valid(value))


def json_equal(output: str, item: EvalItem) -> float:
    """Valid JSON equal to `expected` (a JSON value, or a string holding one): key order and spacing do not count."""
    expected = item.expected
    if isinstance(expected, str):
        expected = parse_json(expected)
    value = parse_json(output)
    return float(value is not _INVALID and value == expected)


def not_rejected(output: str, item: EvalItem) -> float:
    """For a thumbs-down item without a correction: all that is known is which answer was wrong."""
    return float(not _same(output, item.rejected or "", item.normalize))


_INVALID = object()
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_json(text: str) -> Any:
    """The JSON value in `text`, tolerating a Markdown code fence around it; `_INVALID` if there is none."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError:
        return _INVALID


BUILTIN: dict[str, Scorer] = {
    "exact": exact,
    "contains": contains,
    "regex": regex,
    "json_schema": json_schema,
    "json_equal": json_equal,
    "not_rejected": not_rejected,
}


def registry(judge: Scorer | None = None, extra: Mapping[str, Scorer] | None = None) -> dict[str, Scorer]:
    """Scorers by name: the built-ins, `judge` when one is configured, and any `extra` ones."""
    table = dict(BUILTIN)
    if judge is not None:
        table["judge"] = judge
    table.update(extra or {})
    return table


def score_item(item: EvalItem, output: str, scorers: Mapping[str, Scorer]) -> float:
    """The item's score for `output`, in [0, 1]; reproducing a rejected answer scores 0."""
    if item.rejected is not None and _same(output, item.rejected, item.normalize):
        return 0.0
    scorer = scorers.get(item.scorer)
    if scorer is None:
        hint = " (no judge model is configured)" if item.scorer == "judge" else ""
        raise ScorerError(f"item {item.id}: unknown scorer {item.scorer!r}{hint}; known: {sorted(scorers)}")
    return min(1.0, max(0.0, float(scorer(output, item))))


def load_golden(source: Path | str | Iterable[str], known_scorers: Iterable[str] | None = None) -> list[EvalItem]:
    """Golden items from a JSONL file (or its lines); every bad line is reported, with its number, in one error."""
    lines = Path(source).read_text().splitlines() if isinstance(source, Path | str) else list(source)
    known = set(known_scorers) if known_scorers is not None else set(BUILTIN) | {"judge"}
    items, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            if not isinstance(fields, dict):
                raise ValueError("a line must be a JSON object")
            item = EvalItem.model_validate({**fields, "split": "golden"})
        except ValueError as error:  # pydantic's ValidationError and json's decode error are ValueErrors
            problems.append(f"line {number}: {_first_error(error)}")
            continue
        if item.scorer not in known:
            problems.append(f"line {number}: unknown scorer {item.scorer!r}; known: {sorted(known)}")
            continue
        items.append(item)
    if problems:
        raise ScorerError("golden set rejected: " + "; ".join(problems))
    return items


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(error)
