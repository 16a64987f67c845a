"""The judge scorer: a model behind any OpenAI-compatible URL rates an output 0/1 or 0-10, parsed robustly."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import httpx
import openai

from trainer.scorers import EvalItem, ScorerError

_SYSTEM = (
    "You grade answers given by an assistant. Read the conversation, the reference answer if there is one, the "
    "criteria if there are any, and the answer to grade. Think briefly if you need to, then end with one line "
    "exactly of the form `VERDICT: <score>`."
)
_SCALES = {
    "binary": "Score 1 if the answer is correct and acceptable, 0 if it is not.",
    "ten": "Score from 0 (useless or wrong) to 10 (fully correct and helpful), as an integer.",
}
_VERDICT = re.compile(r"verdict\W*(\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?(?![\w.])")
_YES = {"yes", "correct", "pass", "acceptable", "true"}
_NO = {"no", "incorrect", "wrong", "fail", "unacceptable", "false"}


class JudgeScorer:
    """A `Scorer` that asks a judge model. One instance per evaluation run; it holds one HTTP connection pool.

    `http_client` lets tests put an `httpx.MockTransport` under the OpenAI client.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "not-needed",
        scale: Literal["binary", "ten"] = "binary",
        attempts: int = 2,
        timeout_s: float = 60.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.model = model
        self.scale = scale
        self.attempts = attempts
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout_s,
            max_retries=2,
            http_client=http_client,  # type: ignore[arg-type]  # openai also takes an httpx (not httpx2) client
        )

    def __call__(self, output: str, item: EvalItem) -> float:
        messages: list[Any] = [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": self.prompt(output, item)},
        ]
        replies = []
        # A reply without a verdict is asked again once: judges at temperature 0 still drift off-format.
        for _ in range(self.attempts):
            reply = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=0.0, max_tokens=256
            )
            text = reply.choices[0].message.content or ""
            verdict = parse_verdict(text, self.scale)
            if verdict is not None:
                return verdict
            replies.append(text)
        last = replies[-1][:200] if replies else ""
        raise ScorerError(f"item {item.id}: the judge gave no verdict in {self.attempts} replies; last: {last!r}")

    def prompt(self, output: str, item: EvalItem) -> str:
        parts = ["Conversation:", json.dumps(item.messages(), ensure_ascii=False, indent=1)]
        if item.expected is not None:
            expected = item.expected if isinstance(item.expected, str) else json.dumps(item.expected)
            parts += ["Reference answer:", expected]
        if item.criteria:
            parts += ["Criteria:", item.criteria]
        parts += ["Answer to grade:", output, _SCALES[self.scale]]
        return "\n".join(parts)

    def close(self) -> None:
        self.client.close()


def parse_verdict(text: str, scale: Literal["binary", "ten"]) -> float | None:
    """The verdict in a judge's reply, scaled to [0, 1], or None if there is none to be read.

    In order: the last `VERDICT: n`; a reply that is only a number (or `n/10`); for 0/1, a reply that is one
    yes/no-like word. Out-of-range numbers are no verdict rather than a guess.
    """
    top = 1.0 if scale == "binary" else 10.0
    found = _VERDICT.findall(text)
    if found:
        return _scaled(float(found[-1]), top)
    stripped = text.strip().strip(".*`'\" ")
    whole = _NUMBER.fullmatch(stripped)
    if whole:
        value, out_of = float(whole.group(1)), whole.group(2)
        if out_of is not None:
            return _scaled(value / float(out_of) * top, top) if float(out_of) > 0 else None
        return _scaled(value, top)
    # A one-word reply only: in a sentence, "no" or "correct" says too little ("no idea", "not correct").
    word = stripped.casefold()
    if scale == "binary" and (word in _YES or word in _NO):
        return 1.0 if word in _YES else 0.0
    return None


def _scaled(value: float, top: float) -> float | None:
    return value / top if 0.0 <= value <= top else None
