"""Grounding a completion in the caller's documents: the options in effect, the query, the context put in front.

Light on purpose: typed against retrieval's light modules and a small Protocol, so serving never imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from pydantic import ValidationError

from gateway.errors import BadRequest, RetrievalDisabled
from gateway.openai.protocol import RetrievalOptions
from retrieval.hits import Grounding, Hit, ground
from retrieval.settings import RetrievalSettings

SOURCES_HEADER = "x-loraflow-sources"
_TEXT_PARTS = ("text", "input_text")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Retriever(Protocol):
    """What grounding needs of `retrieval.service.RetrievalService`."""

    async def retrieve(
        self, tenant_id: str, query: str, top_k: int | None = None, min_score: float | None = None
    ) -> list[Hit]: ...


@dataclass(frozen=True)
class Context:
    """What retrieval put in front of one request; `grounding` is None when no chunk matched."""

    grounding: Grounding | None
    seconds: float = 0.0  # the retrieval stage: embedding the query, searching, reading the hits back

    @property
    def sources(self) -> list[dict[str, Any]]:
        return self.grounding.sources if self.grounding else []

    @property
    def record(self) -> list[dict[str, Any]]:
        return self.grounding.record if self.grounding else []

    def headers(self) -> dict[str, str]:
        """The chunk ids (a stream cannot name them in its body) and the retrieval stage's time."""
        return {
            SOURCES_HEADER: self.grounding.header if self.grounding else "",
            "server-timing": f"retrieval;dur={self.seconds * 1000:.1f}",
        }

    def apply(self, endpoint: str, upstream_body: dict[str, Any]) -> None:
        """Put the context first: a system message before the conversation, or text before the prompt."""
        if self.grounding is None:
            return
        if endpoint == "chat":
            upstream_body["messages"] = [self.grounding.message, *upstream_body["messages"]]
            return
        context = self.grounding.message["content"]
        prompt = upstream_body["prompt"]
        upstream_body["prompt"] = f"{context}\n\n{prompt}" if isinstance(prompt, str) else [f"{context}\n\n{prompt[0]}"]


class Grounder:
    """Decides whether a request is grounded and retrieves its context; `retriever` is None with retrieval off."""

    def __init__(
        self, retriever: Retriever | None, settings: RetrievalSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.retriever = retriever
        self.settings = settings
        self._duration = Histogram(
            "loraflow_retrieval_duration_seconds", "Retrieval stage of grounded completions (embed + search).",
            buckets=_BUCKETS, registry=registry,
        )  # fmt: skip

    @classmethod
    def off(cls) -> Grounder:
        """A grounder for a gateway without retrieval: asking for it is 400 `retrieval_disabled`."""
        return cls(None, RetrievalSettings.model_validate({}))

    async def ground(
        self, endpoint: str, body: dict[str, Any], tenant_id: str, alias_options: dict[str, Any]
    ) -> Context | None:
        """The context for this request, or None when retrieval is not asked for (by it, or by its alias)."""
        if self.retriever is None:
            asked = body["retrieval"] is not None if "retrieval" in body else alias_options.get("retrieval")
            if asked not in (None, False):
                raise RetrievalDisabled()
            return None
        options = self.options(body, alias_options)
        if options is None:
            return None
        query = _query(endpoint, body)
        started = time.perf_counter()
        hits = await self.retriever.retrieve(tenant_id, query, options.get("top_k"), options.get("min_score"))
        seconds = time.perf_counter() - started
        self._duration.observe(seconds)
        return Context(ground(hits, max_chars=self.settings.max_context_chars), seconds)

    def options(self, body: dict[str, Any], alias_options: dict[str, Any]) -> dict[str, Any] | None:
        """The alias's retrieval options overridden field by field by the request's; None: not grounded.

        An alias turns retrieval on with `{"retrieval": {...}}` or `{"retrieval": true}`; a request turns it on
        with `"retrieval": {...}` and off, whatever its alias says, with `"retrieval": null`.
        """
        default = alias_options.get("retrieval")
        if default is True:
            default = {}
        elif default is False:
            default = None
        if default is not None and not isinstance(default, dict):
            raise BadRequest("This model's retrieval options are not an object; fix them in the admin API.")
        if "retrieval" in body:
            requested = body["retrieval"]
            if requested is None:
                return None
            merged = {**(default or {}), **requested}  # requested is an object: the request schema checked it
        elif default is None:
            return None
        else:
            merged = dict(default)
        try:
            RetrievalOptions.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            message = f"Invalid retrieval option `{field}`: {first['msg']}."
            raise BadRequest(message, param=f"retrieval.{field}") from None
        top_k = merged.get("top_k")
        if top_k is not None and top_k > self.settings.max_top_k:
            raise BadRequest(f"`top_k` must be at most {self.settings.max_top_k}.", param="retrieval.top_k")
        return merged


def _query(endpoint: str, body: dict[str, Any]) -> str:
    """What is searched for: the last user message's text, or the prompt."""
    if endpoint == "chat":
        for message in reversed(body["messages"]):
            if message.get("role") == "user":
                return _text(message.get("content"))
        return ""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("Retrieval needs one text prompt (not several, nor token ids).", param="prompt")
    return prompt


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones, in order
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type", "text") in _TEXT_PARTS]
        return "\n".join(part for part in parts if isinstance(part, str))
    return ""
