"""Evaluation through the gateway: the candidate and the incumbent answer the same items, and each answer is scored.

What is evaluated is what will be served: requests go through the gateway's OpenAI API with the run's own key
(one the gateway does not record), the candidate pinned (`support@4`), the incumbent pinned (`support@3`) or the
base model by its public name for a first adapter. Greedy decoding (temperature 0), a few requests in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import openai

from trainer.report import Sample
from trainer.scorers import EvalItem, Scorer, score_item


@dataclass
class Scored:
    items: list[EvalItem]
    candidate_outputs: list[str]
    incumbent_outputs: list[str]
    candidate: list[float]
    incumbent: list[float]

    def samples(self, limit: int = 6) -> list[Sample]:
        """A few items where the two answers differ in score (else in text): what a person wants to see."""
        order = sorted(
            range(len(self.items)),
            key=lambda i: (
                self.candidate[i] == self.incumbent[i],
                self.candidate_outputs[i] == self.incumbent_outputs[i],
                i,
            ),
        )
        return [self._sample(i) for i in order[:limit]]

    def _sample(self, i: int) -> Sample:
        item = self.items[i]
        prompt = item.input if isinstance(item.input, str) else str(item.messages()[-1].get("content", ""))
        expected = item.expected if isinstance(item.expected, str) or item.expected is None else str(item.expected)
        return Sample(
            item_id=item.id,
            split=item.split,
            prompt=prompt[-300:],
            expected=expected,
            incumbent=self.incumbent_outputs[i],
            candidate=self.candidate_outputs[i],
            incumbent_score=self.incumbent[i],
            candidate_score=self.candidate[i],
        )


def answer(client: openai.OpenAI, model: str, item: EvalItem, max_tokens: int) -> str:
    """One greedy answer; text items (served by /v1/completions) are replayed there, as they were served.

    Held-out and regression-set items replay the record, where any retrieved context is already in the prompt as it
    was served: they turn the alias's retrieval off (`"retrieval": null`) so it is not added twice. Golden items are
    asked as an app would ask them, grounded if the alias grounds.
    """
    extra_body = {"retrieval": None} if item.split != "golden" else None
    if getattr(item, "endpoint", "chat") == "completion" and isinstance(item.input, str):
        reply = client.completions.create(
            model=model, prompt=item.input, temperature=0, max_tokens=max_tokens, extra_body=extra_body
        )
        return reply.choices[0].text or ""
    chat = client.chat.completions.create(
        model=model,
        messages=item.messages(),
        temperature=0,
        max_tokens=max_tokens,
        extra_body=extra_body,
    )
    return chat.choices[0].message.content or ""


def answers(
    client: openai.OpenAI,
    items: Sequence[EvalItem],
    model: str,
    *,
    max_tokens: int,
    concurrency: int = 4,
    stop: threading.Event | None = None,
) -> list[str]:
    """One model's greedy answers to every item, a few requests in flight; `stop` ends it before its next request."""

    def one(item: EvalItem) -> str:
        if stop is not None and stop.is_set():
            raise Cancelled("stopped")
        return answer(client, model, item, max_tokens)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="answers") as pool:
        return list(pool.map(one, items))


class Cancelled(Exception):
    """Answers no longer wanted (the run ended before it needed them)."""


def evaluate(
    client: openai.OpenAI,
    items: Sequence[EvalItem],
    *,
    candidate: str,
    incumbent: str,
    scorers: Mapping[str, Scorer],
    max_tokens: int,
    concurrency: int = 4,
    on_progress: Callable[[int, int, float], None] | None = None,
    incumbent_outputs: Sequence[str] | None = None,
) -> Scored:
    """Both models answer every item (the incumbent not, when its `incumbent_outputs` were asked for already); a
    request that fails (after the client's retries) fails the evaluation."""
    started = time.perf_counter()
    models = (candidate,) if incumbent_outputs is not None else (candidate, incumbent)
    jobs = [(model, index) for index in range(len(items)) for model in models]
    outputs: dict[tuple[str, int], str] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="evaluate")
    try:
        futures = {
            pool.submit(answer, client, model, items[index], max_tokens): (model, index) for model, index in jobs
        }
        for done, future in enumerate(as_completed(futures), start=1):
            outputs[futures[future]] = future.result()
            if on_progress is not None:
                on_progress(done, len(jobs), time.perf_counter() - started)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a failure stops the queued requests, not the running ones
    candidate_outputs = [outputs[(candidate, i)] for i in range(len(items))]
    if incumbent_outputs is None:
        incumbent_outputs = [outputs[(incumbent, i)] for i in range(len(items))]
    return Scored(
        items=list(items),
        candidate_outputs=candidate_outputs,
        incumbent_outputs=list(incumbent_outputs),
        candidate=[score_item(item, out, scorers) for item, out in zip(items, candidate_outputs, strict=True)],
        incumbent=[score_item(item, out, scorers) for item, out in zip(items, incumbent_outputs, strict=True)],
    )
