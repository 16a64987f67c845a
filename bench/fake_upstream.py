"""A fast fake OpenAI-compatible engine, so that a benchmark sees the gateway's cost and little else.

    python -m bench.fake_upstream --port 8100 [--token-interval-ms 2] [--chunks 20]

It answers what the gateway asks of a vLLM engine (`/health`, `/v1/models`, `/v1/load_lora_adapter`,
`/v1/unload_lora_adapter`) and completions on `/v1/chat/completions` and `/v1/completions`: a non-streamed answer at
once, or a stream of `--chunks` chunks (then a usage chunk when asked, then `[DONE]`). Streams advance the way an
engine's decode loop does: one tick every `--token-interval-ms` writes the next chunk of every running stream, so the
gateway meets chunks one at a time, as it does in production, and many streams cost the fake one timer, not one each.

Raw asyncio with httptools' parser on uvloop (both come with uvicorn[standard]): a request costs it tens of
microseconds, so the direct requests of the benchmark measure the network path and the client, not this server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
from typing import Any, cast

import httptools

BASE_MODEL = "tiny-random"
WORD = "tok"  # every generated token; a chunk's text


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()  # as vLLM writes it (the relay counts on it)


class Engine:
    """The state a vLLM server has that the gateway looks at: the adapters loaded."""

    def __init__(self, chunks: int, interval_s: float) -> None:
        self.adapters: dict[str, str] = {}
        self.chunks = chunks
        self.interval_s = interval_s
        self.ids = itertools.count()
        self.streams: list[Stream] = []
        self._ticking = False

    def models(self) -> bytes:
        data = [{"id": BASE_MODEL, "object": "model", "owned_by": "vllm", "parent": None}]
        data += [
            {"id": name, "object": "model", "parent": BASE_MODEL, "root": path} for name, path in self.adapters.items()
        ]
        return _compact({"object": "list", "data": data})

    def start_stream(self, stream: Stream) -> None:
        self.streams.append(stream)
        if not self._ticking:
            self._ticking = True
            asyncio.get_running_loop().call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        """One decode step: every running stream gets its next chunk."""
        self.streams = [stream for stream in self.streams if stream.step()]
        if self.streams:
            asyncio.get_running_loop().call_later(self.interval_s, self._tick)
        else:
            self._ticking = False


class Stream:
    """One streamed completion: its chunks, pre-encoded, written one per tick."""

    def __init__(self, connection: Connection, events: list[bytes]) -> None:
        self.connection = connection
        self.events = events
        self.sent = 0

    def step(self) -> bool:
        if self.connection.closed:
            return False  # the client went away: the engine drops the request
        self.connection.write_chunk(self.events[self.sent])
        self.sent += 1
        if self.sent < len(self.events):
            return True
        self.connection.end_chunks()
        return False


def completion(engine: Engine, chat: bool, body: dict[str, Any]) -> tuple[bytes | None, list[bytes]]:
    """(a whole JSON answer, or None and the SSE events of a stream)."""
    model = body.get("model") or BASE_MODEL
    rid = f"{'chatcmpl' if chat else 'cmpl'}-{body.get('request_id') or next(engine.ids)}"
    obj = "chat.completion" if chat else "text_completion"
    n = engine.chunks
    usage = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
    if not body.get("stream"):
        text = " ".join([WORD] * n)
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "length"}
            if chat
            else {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        )
        return _compact(
            {"id": rid, "object": obj, "created": 1, "model": model, "choices": [choice], "usage": usage}
        ), []
    head = {"id": rid, "object": f"{obj}.chunk" if chat else obj, "created": 1, "model": model}
    events = []
    for i in range(n):
        finish = "length" if i == n - 1 else None
        piece = WORD + " " if i < n - 1 else WORD
        if chat:
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
        events.append(b"data: " + _compact({**head, "choices": [choice]}) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):  # a tick of its own, as vLLM sends it
        events.append(b"data: " + _compact({**head, "choices": [], "usage": usage}) + b"\n\n")
    events[-1] += b"data: [DONE]\n\n"
    return None, events


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests on it are answered in order, one at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport  # set by connection_made, which runs before any data
        self.closed = False
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._respond(400, b'{"error":"bad request"}')
            self.transport.close()

    # httptools callbacks.

    def on_message_begin(self) -> None:
        self._url, self._body = b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self._url.split(b"?", 1)[0]
        body = json.loads(b"".join(self._body)) if self._body else {}
        engine = self.engine
        if path in (b"/v1/chat/completions", b"/v1/completions") and method == b"POST":
            whole, events = completion(engine, path == b"/v1/chat/completions", body)
            if whole is not None:
                self._respond(200, whole)
                return
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            engine.start_stream(Stream(self, events))
        elif path == b"/health":
            self._respond(200, b"")
        elif path == b"/v1/models":
            self._respond(200, engine.models())
        elif path == b"/v1/load_lora_adapter" and method == b"POST":
            name = body["lora_name"]
            if name in engine.adapters:
                self._respond(
                    400, _compact({"error": {"message": f"The lora adapter '{name}' has already been loaded."}})
                )
            else:
                engine.adapters[name] = body["lora_path"]
                self._respond(200, b'"Success"')
        elif path == b"/v1/unload_lora_adapter" and method == b"POST":
            found = engine.adapters.pop(body["lora_name"], None) is not None
            self._respond(200 if found else 404, b'"Success"' if found else b'{"error":{"message":"not found"}}')
        else:
            self._respond(404, b'{"error":{"message":"not found"}}')

    def _respond(self, status: int, body: bytes) -> None:
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason, len(body), body)
        )

    def write_chunk(self, data: bytes) -> None:
        self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self) -> None:
        self.transport.write(b"0\r\n\r\n")


async def serve(host: str, port: int, chunks: int, interval_s: float) -> None:
    engine = Engine(chunks, interval_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(engine), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--chunks", type=int, default=20, help="chunks of text in a stream (and tokens in an answer)")
    parser.add_argument("--token-interval-ms", type=float, default=2.0, help="time between two chunks of a stream")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.port, args.chunks, args.token_interval_ms / 1000))


if __name__ == "__main__":
    main()
