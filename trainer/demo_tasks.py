"""The two demo tasks: route a support ticket to a label, and extract fields from a message as JSON.

They feed the demo base model's tokenizer corpus, the tests and `loraflow demo`. Each generator is
deterministic for a seed, and each example knows its own right answer, so an oracle can rate replies.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

ROUTING_LABELS = ("billing", "technical", "account", "shipping")

_ROUTING_PHRASES = {
    "billing": [
        "I was charged twice for my subscription",
        "my invoice shows the wrong amount",
        "please refund the last payment",
        "the card payment failed but money left my account",
        "why did my monthly price go up",
        "I need a receipt for the renewal charge",
    ],
    "technical": [
        "the app crashes when I open settings",
        "I get an error 500 on the dashboard",
        "the page will not load on my phone",
        "sync stopped working after the update",
        "the export button does nothing",
        "login works but the screen stays blank",
    ],
    "account": [
        "I cannot reset my password",
        "please change the email on my profile",
        "how do I delete my account",
        "my username is locked after three attempts",
        "add a second user to our team plan",
        "two factor codes never arrive",
    ],
    "shipping": [
        "my parcel has not arrived yet",
        "the tracking number does not work",
        "the box came damaged",
        "can you ship to a new address",
        "the courier left my order at the wrong door",
        "when will my package be delivered",
    ],
}
_OPENERS = ["hello,", "hi team,", "good morning,", "hey,", "dear support,", ""]
_CLOSERS = ["thanks", "please help", "thank you", "regards", "asap please", ""]

_NAMES = ["Ada", "Grace", "Alan", "Linus", "Marie", "Nikola", "Rosa", "Emmy", "Kurt", "Hedy"]
_CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Madrid", "Vienna", "Dublin", "Prague", "Rome", "Warsaw"]
_PRODUCTS = ["kettle", "lamp", "chair", "bicycle", "camera", "printer", "backpack", "guitar"]
_EXTRACT_TEMPLATES = [
    "{name} from {city} asks about the {product}",
    "the {product} for {name} in {city} is late",
    "this is {name}, I live in {city}, I ordered a {product}",
    "please check the {product} order, customer {name}, city {city}",
]

ROUTING_INSTRUCTION = "Route this support ticket to one label: billing, technical, account or shipping."
EXTRACT_INSTRUCTION = 'Extract name, city and product as JSON like {"name": ..., "city": ..., "product": ...}.'


@dataclass(frozen=True)
class Example:
    """One demo item: the user message, and the answer a perfect model gives."""

    task: str
    prompt: str
    answer: str

    def messages(self) -> list[ChatCompletionMessageParam]:
        return [{"role": "user", "content": self.prompt}]


def routing_example(rng: random.Random) -> Example:
    label = rng.choice(ROUTING_LABELS)
    ticket = " ".join(
        part for part in (rng.choice(_OPENERS), rng.choice(_ROUTING_PHRASES[label]), rng.choice(_CLOSERS)) if part
    )
    return Example("routing", f"{ROUTING_INSTRUCTION}\nTicket: {ticket}", label)


def extraction_example(rng: random.Random) -> Example:
    fields = {"name": rng.choice(_NAMES), "city": rng.choice(_CITIES), "product": rng.choice(_PRODUCTS)}
    text = rng.choice(_EXTRACT_TEMPLATES).format(**fields)
    return Example("extraction", f"{EXTRACT_INSTRUCTION}\nMessage: {text}", json.dumps(fields))


GENERATORS = {"routing": routing_example, "extraction": extraction_example}


def examples(task: str, n: int, seed: int = 0) -> list[Example]:
    """`n` examples of `task`, the same list for the same seed."""
    rng = random.Random(f"{task}:{seed}")
    make = GENERATORS[task]
    return [make(rng) for _ in range(n)]


def corpus_lines() -> list[str]:
    """Text the demo tokenizer is trained on: every phrase and template of both tasks, plus chat filler."""
    lines = [ROUTING_INSTRUCTION, EXTRACT_INSTRUCTION, *ROUTING_LABELS, *_NAMES, *_CITIES, *_PRODUCTS]
    for phrases in _ROUTING_PHRASES.values():
        lines.extend(phrases)
    lines.extend(_OPENERS + _CLOSERS + _EXTRACT_TEMPLATES)
    lines.extend(example.prompt + " " + example.answer for task in GENERATORS for example in examples(task, 200))
    lines.extend(
        [
            "You are a helpful assistant. Answer briefly and use the context when it is given.",
            "The quick brown fox jumps over the lazy dog.",
            "What is the capital of France? The capital of France is Paris.",
            "Summarise the following text in one sentence.",
            "Context: [1] the warranty lasts two years. [2] returns are free within thirty days.",
            "0 1 2 3 4 5 6 7 8 9 10 100 1000 { } [ ] : , . ? ! \" ' - _ / @ # % & * + = < >",
        ]
    )
    return lines
