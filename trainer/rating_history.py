"""The alias's ratings as a history: each rating with who gave it, when, whether it is new in this run (given or
changed since the last run that trained), and the near-identical keys of what it rated (prompt, answer).

What the offline checks read (trainer/rating_signals.py, trainer/regression_set.py). Near-identical means equal once
case, punctuation and runs of whitespace are ignored.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from trainer.dataset import prompt_of
from trainer.rated_interactions import RatedInteraction

_PUNCTUATION = re.compile(r"[^\w\s]+")


@dataclass(frozen=True)
class RatingEvent:
    interaction: RatedInteraction
    rating: int  # +1 up, -1 down
    rater: str  # the end user who rated; else the request's `user`; else `key:<id>` (the app behind the key)
    at: datetime
    new: bool
    prompt_key: str
    answer_key: str  # '' when the interaction has no complete answer

    @property
    def up(self) -> bool:
        return self.rating > 0


@dataclass(frozen=True)
class History:
    since: datetime | None  # None: no earlier run that trained, so every rating is new and there is no history
    events: list[RatingEvent]

    @cached_property
    def new(self) -> list[RatingEvent]:
        return [event for event in self.events if event.new]

    @cached_property
    def old(self) -> list[RatingEvent]:
        return [event for event in self.events if not event.new]

    @cached_property
    def by_answer(self) -> dict[tuple[str, str], list[RatingEvent]]:
        """Ratings of the same (near-identical) prompt and answer, together; rated prompts without an answer are
        left out."""
        groups: dict[tuple[str, str], list[RatingEvent]] = defaultdict(list)
        for event in self.events:
            if event.prompt_key and event.answer_key:
                groups[(event.prompt_key, event.answer_key)].append(event)
        return dict(groups)


def history(interactions: Iterable[RatedInteraction], since: datetime | None) -> History:
    events = []
    for interaction in interactions:
        prompt = prompt_of(interaction)
        prompt_key = near_identical(json.dumps(prompt, ensure_ascii=False)) if prompt is not None else ""
        answer = interaction.response_text if interaction.outcome == "completed" else ""
        answer_key = near_identical(answer)
        for rating in interaction.ratings:
            rater = rating.user or interaction.end_user or f"key:{interaction.key_id}"
            new = since is None or rating.at >= since
            events.append(RatingEvent(interaction, rating.rating, rater, rating.at, new, prompt_key, answer_key))
    return History(since, events)


def near_identical(text: str) -> str:
    """The key under which texts that differ only in case, punctuation or spacing are the same."""
    return " ".join(_PUNCTUATION.sub(" ", text).split()).casefold()
