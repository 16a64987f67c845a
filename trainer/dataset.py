"""A run's data, from the record: training examples, held-out items and the golden set, by the flywheel's rules.

Per rated interaction (ratings of several end users are pooled; the majority decides, a tie decides nothing):
- the answer it should have had: the latest correction, else the response if it was liked;
- the answer it should not have had: the response if it was disliked (and is not the correction).

SFT trains on (prompt, should-have answer). KTO trains on the response labelled liked/disliked, and on a correction
labelled desirable. The prompt is the request exactly as it was sent upstream, retrieved context included.

An interaction is held out when a hash of its id falls under `held_out_fraction`: the same interaction is held out
in every run, and never trained on. A held-out item expects the should-have answer (the tenant's scorer), or, with
only a rejected answer, anything else (`not_rejected`); reproducing a rejected answer scores 0 either way.
Training examples whose prompt is also a held-out or golden prompt are dropped (no leak), and duplicates removed.
Newest interactions come first, so `max_examples` and `max_held_out` keep the most recent data.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trainer.rated_interactions import RatedInteraction
from trainer.report import DataCounts
from trainer.result import dataset_hash
from trainer.scorers import EvalItem, normalized

Method = Literal["sft", "kto"]

LEFT_OUT_DISLIKED = "thumbs-down without a correction (nothing to imitate)"
LEFT_OUT_TIE = "as many thumbs-up as thumbs-down, no correction"
LEFT_OUT_NO_PROMPT = "no text prompt in the record"
LEFT_OUT_OTHER_KIND = "other endpoint than the dataset's (chat and text train as separate adapters)"
LEFT_OUT_HELD_OUT_PROMPT = "prompt also in the held-out items"
LEFT_OUT_GOLDEN_PROMPT = "prompt also in the golden set"
LEFT_OUT_OVER_MAX = "beyond max_examples (older)"
LEFT_OUT_OVER_MAX_HELD = "held-out beyond max_held_out (older)"


@dataclass
class Dataset:
    train: list[dict[str, Any]]  # SFT chat/text records or KTO rows, newest first
    held_out: list[EvalItem]
    golden: list[EvalItem]
    counts: DataCounts
    kind: Literal["chat", "text"] = "chat"

    @property
    def hash(self) -> str:
        """Of the training examples, in order: the same data gives the same hash on any machine."""
        return dataset_hash(self.train)

    @property
    def eval_items(self) -> list[EvalItem]:
        return [*self.held_out, *self.golden]


def is_held_out(interaction_id: str, fraction: float) -> bool:
    """Deterministic: the first 8 bytes of sha256(id) as a number in [0, 1), under `fraction`."""
    digest = hashlib.sha256(interaction_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build(
    interactions: Iterable[RatedInteraction],
    *,
    method: Method,
    scorer: str,
    held_out_fraction: float,
    max_examples: int,
    max_held_out: int,
    golden: Sequence[EvalItem] = (),
) -> Dataset:
    """Apply the rules to rated interactions (newest first, as `rated_interactions.rated_interactions` gives them)."""
    rated = list(interactions)
    kind = _majority_kind(rated)
    left_out: Counter[str] = Counter()
    counts = DataCounts(golden=len(golden))
    seen_train: set[str] = set()
    held_prompts: set[str] = set()
    train: list[tuple[str, dict[str, Any]]] = []  # (prompt key, example)
    held_out: list[EvalItem] = []

    for interaction in rated:
        ups = sum(1 for r in interaction.ratings if r.rating > 0)
        downs = len(interaction.ratings) - ups
        counts.thumbs_up += ups
        counts.thumbs_down += downs
        correction = _latest_correction(interaction)
        counts.corrections += correction is not None
        prompt = prompt_of(interaction)
        if prompt is None:
            left_out[LEFT_OUT_NO_PROMPT] += 1
            continue
        if (kind == "text") != isinstance(prompt, str):
            left_out[LEFT_OUT_OTHER_KIND] += 1
            continue
        response = interaction.response_text if interaction.outcome == "completed" else ""
        expected = correction or (response if response and ups > downs else None)
        rejected = response if response and downs > ups and not _same(response, expected) else None
        key = _key(prompt)

        if is_held_out(interaction.id, held_out_fraction):
            if key in held_prompts:
                counts.duplicates_removed += 1
            elif len(held_out) >= max_held_out:
                left_out[LEFT_OUT_OVER_MAX_HELD] += 1
            elif expected is not None or rejected is not None:
                held_prompts.add(key)
                held_out.append(_item(interaction, prompt, kind, scorer, expected, rejected))
            continue

        examples = _examples(method, prompt, kind, response, ups, downs, correction)
        if not examples:
            left_out[LEFT_OUT_DISLIKED if downs > ups else LEFT_OUT_TIE] += 1
        for example in examples:
            fingerprint = json.dumps(example, sort_keys=True, ensure_ascii=False)
            if fingerprint in seen_train:
                counts.duplicates_removed += 1
                continue
            seen_train.add(fingerprint)
            train.append((key, example))

    # No leak: an example whose prompt is evaluated (held out, or golden) is not trained on.
    golden_prompts = {_key(_golden_prompt(item, kind)) for item in golden}
    kept = []
    for key, example in train:
        if key in held_prompts:
            left_out[LEFT_OUT_HELD_OUT_PROMPT] += 1
        elif key in golden_prompts:
            left_out[LEFT_OUT_GOLDEN_PROMPT] += 1
        else:
            kept.append(example)
    if len(kept) > max_examples:
        left_out[LEFT_OUT_OVER_MAX] += len(kept) - max_examples
        kept = kept[:max_examples]

    counts.train, counts.held_out, counts.rated_interactions = len(kept), len(held_out), len(rated)
    counts.left_out = dict(left_out)
    return Dataset(kept, held_out, list(golden), counts, kind)


def _majority_kind(rated: list[RatedInteraction]) -> Literal["chat", "text"]:
    text = sum(1 for interaction in rated if interaction.endpoint == "completion")
    return "text" if text > len(rated) - text else "chat"


def _latest_correction(interaction: RatedInteraction) -> str | None:
    corrected = [r for r in interaction.ratings if r.correction and r.correction.strip()]
    return max(corrected, key=lambda r: r.at).correction if corrected else None


def prompt_of(interaction: RatedInteraction) -> list[dict[str, Any]] | str | None:
    """The prompt as served: chat messages (role and text only), or a text prompt; None if neither."""
    request = interaction.request
    if interaction.endpoint == "chat":
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            return None
        return [
            {"role": str(m.get("role")), "content": _text(m.get("content"))} for m in messages if isinstance(m, dict)
        ]
    prompt = request.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:  # the OpenAI API also takes a batch of one
        prompt = prompt[0]
    return prompt if isinstance(prompt, str) and prompt else None


def _golden_prompt(item: EvalItem, kind: str) -> list[dict[str, Any]] | str:
    if kind == "text" and isinstance(item.input, str):
        return item.input
    return [{"role": str(m.get("role")), "content": _text(m.get("content"))} for m in item.messages()]


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts: the text ones, in order
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return content if isinstance(content, str) else ""


def _examples(
    method: Method,
    prompt: list[dict[str, Any]] | str,
    kind: str,
    response: str,
    ups: int,
    downs: int,
    correction: str | None,
) -> list[dict[str, Any]]:
    if method == "sft":
        answer = correction or (response if response and ups > downs else None)
        if answer is None:
            return []
        if kind == "text":
            return [{"prompt": prompt, "completion": answer}]
        return [{"messages": [*prompt, {"role": "assistant", "content": answer}]}]
    rows = []
    if response and ups != downs:
        rows.append(_kto_row(prompt, kind, response, ups > downs))
    if correction and not (rows and rows[0]["label"] and _same(response, correction)):
        rows.append(_kto_row(prompt, kind, correction, True))
    return rows


def _kto_row(prompt: list[dict[str, Any]] | str, kind: str, answer: str, label: bool) -> dict[str, Any]:
    if kind == "text":
        return {"prompt": prompt, "completion": answer, "label": label}
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}], "label": label}


def _item(
    interaction: RatedInteraction,
    prompt: list[dict[str, Any]] | str,
    kind: str,
    scorer: str,
    expected: str | None,
    rejected: str | None,
) -> EvalItem:
    fields: dict[str, Any] = {"id": interaction.id, "input": prompt, "split": "held_out", "rejected": rejected}
    if kind == "text":
        fields["endpoint"] = "completion"  # replayed through /v1/completions, as it was served
    if expected is None:
        return EvalItem(**fields, scorer="not_rejected")
    return EvalItem(**fields, scorer=scorer, expected=expected)


def _key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and normalized(a) == normalized(b)
