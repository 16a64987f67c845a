"""A lean HTTP/1.1 load client: raw asyncio and httptools' parser over keep-alive connections.

A benchmark of a proxy that costs a millisecond needs a client that costs much less: httpx spends ~0.3 ms of CPU on a
request, this one a few tens of microseconds (`bench/gateway_overhead.py` measures and reports it). It sends
pre-encoded requests and keeps only what a benchmark needs: status, time of the first body byte, time of the end,
and whether the body ended as expected.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, cast

import httptools


@dataclass(slots=True)
class Reply:
    status: int
    first_byte_at: float  # perf_counter() when the first byte of the body arrived
    ended_at: float
    tail: bytes  # the last bytes of the body (a stream must end with [DONE])
    headers: dict[bytes, bytes]


class ConnectionLost(Exception):
    pass


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport  # set by connection_made, which runs before any data
        self._reply: asyncio.Future[Reply] | None = None
        self._first = 0.0
        self._tail = b""
        self._headers: dict[bytes, bytes] = {}
        self._keep_headers = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(ConnectionLost(repr(exc)))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._reply is not None and not self._reply.done():
                self._reply.set_exception(ConnectionLost(repr(exc)))
            self.transport.close()

    def on_message_begin(self) -> None:
        self._first, self._tail, self._headers = 0.0, b"", {}

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._keep_headers:
            self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        if not self._first:
            self._first = time.perf_counter()
        self._tail = (self._tail + body)[-256:]

    def on_message_complete(self) -> None:
        reply = self._reply
        if reply is not None and not reply.done():
            now = time.perf_counter()
            status = self.parser.get_status_code()
            reply.set_result(Reply(status, self._first or now, now, self._tail, self._headers))

    async def send(self, request: bytes, keep_headers: bool = False) -> Reply:
        if self.closed:
            raise ConnectionLost("closed")
        self._keep_headers = keep_headers
        self._reply = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._reply


class Pool:
    """Keep-alive connections to one host:port; as many as requests in flight."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[Connection] = []

    async def _open(self) -> Connection:
        _, connection = await asyncio.get_running_loop().create_connection(Connection, self.host, self.port)
        return connection

    async def send(self, request: bytes, keep_headers: bool = False) -> Reply:
        connection = self._idle.pop() if self._idle else await self._open()
        while connection.closed:
            connection = self._idle.pop() if self._idle else await self._open()
        reply = await connection.send(request, keep_headers)
        if not connection.closed:
            self._idle.append(connection)
        return reply

    async def warm(self, count: int) -> None:
        """Open `count` connections ahead of a measurement (the connect is not what is measured)."""
        self._idle += await asyncio.gather(*(self._open() for _ in range(count - len(self._idle))))

    def close(self) -> None:
        for connection in self._idle:
            connection.transport.close()
        self._idle.clear()


def post(host: str, port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """A POST with a JSON body, encoded once and sent as many times as needed."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json",
             f"content-length: {len(payload)}"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
