"""Serving a completion: check the request, resolve its model to an adapter version, relay it to an engine, and
report what happened to the observers (metrics, the record) without making the client wait for them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import anyio
from fastapi import Request
from fastapi.responses import Response

from gateway.auth import Caller
from gateway.catalog import CatalogHolder, VersionRef
from gateway.engine.pool import EnginePool, Upstream
from gateway.engine.transport import ReadTimeout, TransportError
from gateway.errors import (
    BadRequest,
    EngineUnavailable,
    GatewayError,
    ModelNotFound,
    PayloadTooLarge,
    UpstreamError,
    sse_error_event,
)
from gateway.grounding import Context, Grounder
from gateway.openai.completion_ids import new_completion_id
from gateway.openai.protocol import ChatCompletionRequest, CompletionRequest
from gateway.openai.streaming import SSERelay, SSEResponse, Write, loads, rewrite_answer
from gateway.request_body import read_json

log = logging.getLogger(__name__)

Endpoint = Literal["chat", "completion"]
Outcome = Literal["completed", "client_disconnected", "upstream_error"]

_PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
_EXTENSIONS = ("retrieval",)  # ours: never sent to the engine


@dataclass(frozen=True)
class Target:
    """What a request's `model` resolved to."""

    public_model: str  # what the response names: the base model, or the version served (`support@2`)
    engine_model: str  # what the engine knows it as
    version: VersionRef | None
    options: dict[str, Any] = field(default_factory=dict)
    alias: str | None = None  # the tenant's alias that serves it (None: the base model asked for by name)


@dataclass
class Exchange:
    """One completion as it happened, handed to every observer when it ends."""

    completion_id: str
    endpoint: Endpoint
    caller: Caller
    requested_model: str
    target: Target
    upstream_body: dict[str, Any]
    stream: bool
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    ended: float | None = None
    response_text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    outcome: Outcome = "completed"
    error: str | None = None
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    context: Context | None = None  # retrieval: what was put in front of the request, when it was grounded

    @property
    def latency_s(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started


Observer = Callable[[Exchange], None]  # called on the event loop: must not block


class Admission(Protocol):
    """A part that must agree before a completion is served, and may add response headers (the record)."""

    def admit(self) -> None: ...

    def headers(self, exchange: Exchange) -> dict[str, str]: ...


class CompletionService:
    def __init__(
        self,
        pool: EnginePool,
        catalog: CatalogHolder,
        base_model: str,
        max_request_bytes: int,
        observers: list[Observer] | None = None,
        admissions: list[Admission] | None = None,
        grounder: Grounder | None = None,
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._base_model = base_model
        self._max_request_bytes = max_request_bytes
        self.observers: list[Observer] = observers or []
        self.admissions: list[Admission] = admissions or []
        self.grounder = grounder or Grounder.off()

    async def complete(self, endpoint: Endpoint, request: Request, caller: Caller) -> Response:
        wire_type: type[ChatCompletionRequest | CompletionRequest] = (
            ChatCompletionRequest if endpoint == "chat" else CompletionRequest
        )
        parsed, body = await read_json(request, wire_type, self._max_request_bytes)
        target = self.resolve(caller, parsed.model, parsed.user)
        for admission in self.admissions:
            admission.admit()
        completion_id = new_completion_id(endpoint)
        context = await self.grounder.ground(endpoint, body, caller.tenant_id, target.options)

        upstream_body = {key: value for key, value in body.items() if key not in _EXTENSIONS}
        upstream_body["model"] = target.engine_model
        upstream_body["request_id"] = completion_id  # the engine's logs then name the id the client sees
        client_wants_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        if parsed.stream:
            # Always ask for usage: the record needs token counts even when the client does not.
            upstream_body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}

        if context is not None:  # the record keeps the messages exactly as sent
            context.apply(endpoint, upstream_body)
        exchange = Exchange(completion_id, endpoint, caller, parsed.model, target, upstream_body, bool(parsed.stream))
        if context is not None:
            exchange.context, exchange.retrieved = context, context.record
        upstream = await self._open(endpoint, exchange)
        if not parsed.stream:
            return await self._respond(upstream, exchange)
        relay = SSERelay(completion_id, target.public_model, target.engine_model, client_wants_usage=client_wants_usage)
        return SSEResponse(partial(self._relay, upstream, relay, exchange), headers=self.response_headers(exchange))

    def resolve(self, caller: Caller, model: str, user: str | None = None) -> Target:
        """During an alias's canary its name serves the arm of the end user (`user`), else of the key."""
        name = model or caller.default_adapter or ""
        if not name:
            raise BadRequest("You must provide a model parameter.", param="model")
        name = caller.model_map.get(name, name)
        if name == self._base_model:
            return Target(self._base_model, self._base_model, None)
        alias, version = self._catalog.current.resolve(caller.tenant_id, name, user or caller.key_id)
        if version is None:  # an alias with nothing promoted yet is served by the base model
            return Target(self._base_model, self._base_model, None, alias.options, alias.alias)
        public = name if name.startswith("ft:") else version.public_name  # a fine-tuned model keeps its name
        return Target(public, version.engine_name, version, alias.options, alias.alias)

    def response_headers(self, exchange: Exchange) -> dict[str, str]:
        headers = {"x-loraflow-model": exchange.target.public_model, "x-request-id": exchange.completion_id}
        if exchange.context is not None:  # the only way a stream can name its sources
            headers.update(exchange.context.headers())
        for admission in self.admissions:
            headers.update(admission.headers(exchange))
        return headers

    async def _open(self, endpoint: Endpoint, exchange: Exchange) -> Upstream:
        body = json.dumps(exchange.upstream_body).encode()
        try:
            upstream = await self._pool.request(_PATHS[endpoint], body, exchange.target.version)
        except TransportError as exc:
            raise self._failed(exchange, _transport_error(exc)) from None
        except GatewayError as exc:
            raise self._failed(exchange, exc) from None
        if upstream.response.status != 200:
            try:
                error = self._engine_error(upstream.response.status, await upstream.response.read(), exchange.target)
            except TransportError as exc:
                error = _transport_error(exc)
            finally:
                await upstream.aclose()
            raise self._failed(exchange, error)
        return upstream

    async def _respond(self, upstream: Upstream, exchange: Exchange) -> Response:
        try:
            raw = await upstream.response.read()
            data = loads(raw)
        except TransportError as exc:
            raise self._failed(exchange, _transport_error(exc)) from None
        except ValueError:
            raise self._failed(exchange, UpstreamError("The engine sent a response that is not JSON.")) from None
        finally:
            await upstream.aclose()
        if not isinstance(data, dict):
            raise self._failed(exchange, UpstreamError("The engine sent a response that is not a JSON object."))
        choice = (data.get("choices") or [{}])[0]
        exchange.response_text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
        exchange.finish_reason = choice.get("finish_reason")
        exchange.usage = data.get("usage")
        exchange.first_token_at = exchange.ended = time.perf_counter()
        self._notify(exchange)
        # The extension field `retrieval` names the sources of a grounded answer.
        extra = {"retrieval": {"sources": exchange.context.sources}} if exchange.context is not None else {}
        body = rewrite_answer(raw, data, exchange.completion_id, exchange.target.public_model, extra)
        return Response(body, media_type="application/json", headers=self.response_headers(exchange))

    async def _relay(self, upstream: Upstream, relay: SSERelay, exchange: Exchange, write: Write) -> None:
        """Relay the engine's stream to the client; the events of each read of the engine's bytes go out as they
        came, in one write. However it ends, the upstream is closed (which cancels the request in the engine when
        the client left) and the exchange is reported."""
        outcome: Outcome = "client_disconnected"  # unless the loop below gets to the end
        try:
            try:
                async for data in upstream.response.chunks():
                    events = relay.feed(data)
                    if events:
                        await write(events)
            except TransportError as exc:
                outcome, exchange.error = "upstream_error", str(exc)
                await write(sse_error_event(EngineUnavailable("The engine stopped while streaming this response.")))
                return
            if relay.done:
                outcome = "completed"
            else:
                outcome, exchange.error = "upstream_error", "stream ended without [DONE]"
                await write(sse_error_event(UpstreamError("The engine ended the stream early.")))
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    await upstream.aclose()  # when the client left, this cancels the request in the engine
            finally:  # reported even if closing failed: the record is complete
                exchange.outcome = outcome
                exchange.ended = time.perf_counter()
                exchange.first_token_at = relay.transcript.first_token_at
                exchange.response_text, exchange.finish_reason, exchange.usage = relay.transcript.summary()
                self._notify(exchange)

    def _engine_error(self, status: int, body: bytes, target: Target) -> GatewayError:
        if status == 404:
            return ModelNotFound(target.public_model)
        try:
            error = json.loads(body).get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        text = body.decode("utf-8", errors="replace")
        message = str(error.get("message") or text[:500] or "The engine refused the request.")
        message = message.replace(target.engine_model, target.public_model)  # never show the internal name
        param = error.get("param") if isinstance(error.get("param"), str) else None
        if status == 413:
            return PayloadTooLarge(message)
        if status in (400, 422):
            return BadRequest(message, param=param.removeprefix("body.") if param else None)
        if status == 503 or status >= 500:
            return EngineUnavailable(f"The engine failed: {message}")
        return UpstreamError(f"The engine answered {status}: {message}")

    def _failed(self, exchange: Exchange, error: GatewayError) -> GatewayError:
        """Errors before any byte reached the client are recorded too (as upstream errors), then raised."""
        exchange.outcome = "upstream_error"
        exchange.error = error.message
        exchange.ended = time.perf_counter()
        self._notify(exchange)
        return error

    def _notify(self, exchange: Exchange) -> None:
        for observer in self.observers:
            observer(exchange)


def _transport_error(exc: TransportError) -> GatewayError:
    """The engine's connection failed before the client got a byte: a 502 if it was too slow, else a 503."""
    log.warning("engine connection failed: %s", exc)
    if isinstance(exc, ReadTimeout):
        return UpstreamError("The engine did not answer in time.")
    return EngineUnavailable(f"The engine connection failed: {exc.kind}.")
