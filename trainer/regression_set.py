"""The regression set, built from the record with no one's help: prompts whose answer several distinct users
approved, over some time, and nobody rated down. A candidate that now answers them worse than production breaks what
users agreed on, and is held for review (trainer/gate.py), even where no golden set was uploaded.

Only ratings from before this run's new ones count (the history), so the ratings under review cannot remove an item
by contradicting it; with no earlier run that trained, all ratings do.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from trainer.dataset import prompt_of
from trainer.rating_history import History, RatingEvent
from trainer.scorers import EvalItem
from trainer.tenant_settings import RegressionPolicy


def build(history: History, policy: RegressionPolicy, scorer: str, kind: str) -> list[EvalItem]:
    """Items of `kind` (chat or text, as the dataset's) that expect the agreed answer, scored with `scorer`."""
    if not policy.enabled:
        return []
    trusted = history.old if history.since is not None else history.events
    groups: dict[tuple[str, str], list[RatingEvent]] = defaultdict(list)
    for event in trusted:
        if event.prompt_key and event.answer_key:
            groups[(event.prompt_key, event.answer_key)].append(event)
    agreed: dict[str, tuple[int, list[RatingEvent]]] = {}  # by prompt: (approvers, the ratings of that answer)
    ambiguous: set[str] = set()
    for (prompt_key, _), events in groups.items():
        if any(not event.up for event in events):
            continue  # contradicted
        approvers = {event.rater for event in events}
        times = [event.at for event in events]
        if len(approvers) < policy.min_users or (max(times) - min(times)).total_seconds() < policy.min_span_s:
            continue
        if prompt_key in agreed:  # two different answers agreed on: an exact scorer cannot expect both
            ambiguous.add(prompt_key)
        agreed[prompt_key] = (len(approvers), events)
    ranked = sorted(
        ((count, events) for key, (count, events) in agreed.items() if key not in ambiguous),
        key=lambda entry: (-entry[0], entry[1][0].prompt_key),
    )
    items = []
    for _, events in ranked:
        interaction = events[0].interaction
        prompt = prompt_of(interaction)
        if prompt is None or (kind == "text") != isinstance(prompt, str):
            continue
        fields = {"endpoint": "completion"} if kind == "text" else {}
        key = hashlib.sha256(f"{events[0].prompt_key}\x00{events[0].answer_key}".encode()).hexdigest()[:12]
        items.append(
            EvalItem(
                id=f"agreed-{key}",
                input=prompt,
                expected=interaction.response_text,
                scorer=scorer,
                split="regression",
                **fields,
            )
        )
        if len(items) >= policy.max_items:
            break
    return items
