"""Relaying an engine's answers, streamed (SSE: split into events, a transcript kept) or whole, with the client's
names put back.

The engine names its response after the opaque adapter name and its own request id; the client must see the model
it asked for and the completion id the record keeps. The rewrite is a byte replacement of two JSON members
(the engine writes compact JSON), with a parse-and-dump fallback if that ever stops matching. What the record
needs of an answer is read with orjson (a few times faster than the standard library on the engine's small
chunks), and with the standard library wherever orjson refuses what it accepts (NaN, lone surrogates).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from starlette.responses import Response

DONE = b"data: [DONE]"


@dataclass
class Transcript:
    """What a stream carried, assembled for the record once the stream is over."""

    events: list[bytes] = field(default_factory=list)
    first_token_at: float | None = None

    def summary(self) -> tuple[str, str | None, dict[str, Any] | None]:
        """(response text of choice 0, its finish reason, usage)."""
        text: list[str] = []
        finish_reason = None
        usage = None
        for event in self.events:
            try:
                chunk = loads(event[6:])
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if piece:
                    text.append(piece)
                finish_reason = choice.get("finish_reason") or finish_reason
        return "".join(text), finish_reason, usage


def loads(data: bytes) -> Any:
    """JSON the engine wrote. Raises ValueError if it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def rewrite_answer(
    raw: bytes, data: dict[str, Any], completion_id: str, public_model: str, extra: dict[str, Any]
) -> bytes:
    """A whole answer as the client gets it: the engine's bytes with its id and model replaced (and `extra` members
    added at the end); re-encoded from `data` only if the engine's JSON is not laid out as expected."""
    if isinstance(data.get("id"), str) and isinstance(data.get("model"), str):
        id_from = b'"id":' + orjson.dumps(data["id"])
        model_from = b'"model":' + orjson.dumps(data["model"])
        body = raw.rstrip()
        if body.startswith(b"{" + id_from) and model_from in body and body.endswith(b"}"):
            body = body.replace(id_from, b'"id":' + orjson.dumps(completion_id), 1)
            body = body.replace(model_from, b'"model":' + orjson.dumps(public_model), 1)
            for name, value in extra.items():
                body = body[:-1] + b"," + orjson.dumps(name) + b":" + orjson.dumps(value) + b"}"
            return body
    return json.dumps({**data, "id": completion_id, "model": public_model, **extra}).encode()


class SSERelay:
    """Feeds on upstream bytes, returns whole events ready for the client (each ending in a blank line); the events
    that one read of the engine's bytes completes go out together, as they came."""

    def __init__(self, completion_id: str, public_model: str, engine_model: str, *, client_wants_usage: bool) -> None:
        self.completion_id = completion_id
        self.public_model = public_model
        self._model_from = f'"model":"{engine_model}"'.encode()
        self._model_to = json.dumps({"model": public_model}, separators=(",", ":"))[1:-1].encode()
        self._id_from: bytes | None = None
        self._id_to = f'"id":"{completion_id}"'.encode()
        self._client_wants_usage = client_wants_usage
        self._buffer = b""
        self.transcript = Transcript()
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The whole events that `data` completes, ready for the client in one write (b"" if none): the events
        that one read of the engine's bytes completes go out together, as they came."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return b"".join(out)
            event, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            event = event.rstrip(b"\r")
            if event.startswith(DONE):
                self.done = True
                out.append(DONE + b"\n\n")
            elif event.startswith(b"data: "):
                rewritten = self._rewrite(event)
                if rewritten is not None:
                    out.append(rewritten + b"\n\n")
            elif event:  # comments and other fields pass unchanged
                out.append(event + b"\n\n")

    def _rewrite(self, event: bytes) -> bytes | None:
        if self._id_from is None:
            self._id_from = _upstream_id(event)
        self.transcript.events.append(event)
        if self.transcript.first_token_at is None and _carries_text(event):
            self.transcript.first_token_at = time.perf_counter()
        usage_only = b'"choices":[]' in event and b'"usage":' in event
        if usage_only and not self._client_wants_usage:
            return None  # we asked the engine for usage for the record; the client did not
        if self._id_from and self._id_from in event and self._model_from in event:
            return event.replace(self._id_from, self._id_to, 1).replace(self._model_from, self._model_to, 1)
        return self._rewrite_slowly(event)

    def _rewrite_slowly(self, event: bytes) -> bytes:
        try:
            chunk = json.loads(event[6:])
        except ValueError:
            return event
        if isinstance(chunk, dict) and "error" not in chunk:
            chunk["id"] = self.completion_id
            chunk["model"] = self.public_model
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode()


def _upstream_id(event: bytes) -> bytes | None:
    start = event.find(b'"id":"')
    if start < 0:
        return None
    end = event.find(b'"', start + 6)
    return event[start : end + 1] if end > 0 else None


def _carries_text(event: bytes) -> bool:
    for key in (b'"content":"', b'"text":"'):
        at = event.find(key)
        if at >= 0 and event[at + len(key) : at + len(key) + 1] != b'"':
            return True
    return False


Write = Callable[[bytes], Awaitable[None]]  # sends bytes of the response body to the client


class SSEResponse(Response):
    """A stream whose body `relay(write)` writes, event by event as the engine sends them.

    The client going away ends the relay at once, which is what cancels the request in the engine (the relay's own
    `finally` closes the upstream connection): a server on ASGI < 2.4 (uvicorn) says so through `receive`, watched
    here while the relay runs; one on 2.4 by failing the next send. Leaner than Starlette's StreamingResponse on
    the hot path: no task group, no async iterator between the engine's bytes and the client's socket.
    """

    media_type = "text/event-stream"

    def __init__(self, relay: Callable[[Write], Awaitable[None]], headers: Mapping[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self._relay = relay
        self.init_headers(headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        over = False

        async def watch(relaying: anyio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not over:  # the client left mid-stream: stop the relay where it waits
                relaying.cancel()

        with anyio.CancelScope() as relaying:  # a cancellation of this scope ends here, not in the server
            watcher = asyncio.get_running_loop().create_task(watch(relaying))
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                await self._relay(write)
                over = True  # before any other await: the watcher must not cancel a finished stream
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # ASGI 2.4: the send failed, the client left; the relay has closed the upstream already
                pass
            finally:
                over = True
                watcher.cancel()
