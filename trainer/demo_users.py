"""Simulated users of a demo task: they send requests through the gateway with the official `openai` client, and an
oracle that knows each right answer rates the replies (👍 when right; 👎 with the right answer as a correction).

Used by `loraflow demo`, the end-to-end flywheel tests and the cycle benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import openai

from trainer.demo_tasks import Example
from trainer.scorers import normalized, parse_json

Rating = Literal["oracle", "poison"]


@dataclass
class Served:
    example: Example
    completion_id: str
    answer: str
    served_by: str  # the model that answered: the base model's name, or a version (`router@1`)

    @property
    def right(self) -> bool:
        return is_right(self.example, self.answer)


def is_right(example: Example, answer: str) -> bool:
    """The oracle: the exact label for routing, the same JSON value for extraction."""
    if example.task == "extraction":
        return parse_json(answer) == parse_json(example.answer)
    return normalized(answer) == normalized(example.answer)


def ask(client: openai.OpenAI, example: Example, *, model: str, max_tokens: int, user: str) -> Served:
    reply = client.chat.completions.create(
        model=model,
        messages=example.messages(),
        temperature=0,
        max_tokens=max_tokens,
        user=user,
    )
    return Served(example, reply.id, reply.choices[0].message.content or "", reply.model)


def send(
    client: openai.OpenAI,
    examples: Sequence[Example],
    *,
    model: str,
    max_tokens: int,
    concurrency: int = 4,
    on_done: Callable[[], None] | None = None,
) -> list[Served]:
    """Every example asked once (user `user-<i>`), a few at a time; replies in the examples' order."""

    def one(index: int) -> Served:
        served = ask(client, examples[index], model=model, max_tokens=max_tokens, user=f"user-{index}")
        if on_done is not None:
            on_done()
        return served

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="users") as pool:
        return list(pool.map(one, range(len(examples))))


def rate(
    client: openai.OpenAI,
    served: Sequence[Served],
    *,
    how: Rating = "oracle",
    concurrency: int = 4,
    on_done: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Rate every reply through `POST /v1/feedback`. `oracle`: 👍 if right, else 👎 with the right answer as the
    correction. `poison`: 👍 on everything, right or wrong (a user who clicks 👍 without reading)."""

    def one(index: int) -> str:
        item = served[index]
        good = how == "poison" or item.right
        body: dict[str, object] = {"completion_id": item.completion_id, "rating": "up" if good else "down"}
        if not good:
            body["correction"] = item.example.answer
        body["user"] = f"user-{index}"
        client.post("/feedback", body=body, cast_to=object)
        if on_done is not None:
            on_done()
        return "up" if good else "down"

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ratings") as pool:
        ratings = list(pool.map(one, range(len(served))))
    return {"up": ratings.count("up"), "down": ratings.count("down")}


def accuracy(served: Sequence[Served]) -> float:
    return sum(item.right for item in served) / len(served) if served else 0.0
