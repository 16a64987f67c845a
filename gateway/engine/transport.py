"""How a completion request reaches an engine and its answer comes back: the one narrow interface the serving path
uses, on aiohttp over the network, or on an httpx client where a test puts a fake engine in place of the network.

aiohttp because it is made for this job and costs a sixth of httpx's CPU: ~0.11 ms a request against ~0.78 ms
(httpx's own layer ~0.2 ms, its httpcore/anyio/h11 stack the rest; `python -m bench.gateway_overhead`, issue 15),
and a proxy that fronts many tenants pays that on every request. Management calls (health, adapters) stay on httpx.

Errors are the transport's own, whichever library sits below:

    TransportError        the connection failed or broke (a 503 or 502 for the client)
    ├── ConnectFailed     nothing reached the engine: another engine may safely take the request
    └── ReadTimeout       the engine took longer than `request_timeout_s` to send the next bytes
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
import httpx

log = logging.getLogger(__name__)

_JSON = {"content-type": "application/json"}


class TransportError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.kind = type(cause).__name__  # the library's name for what happened (ReadError, ClientOSError, ...)


class ConnectFailed(TransportError):
    pass


class ReadTimeout(TransportError):
    pass


class EngineResponse(Protocol):
    """An engine's answer, its body not read yet. Close it exactly once; closing it unread cancels the request."""

    status: int

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (a stream's events, cut wherever the network cut them)."""
        ...

    async def aclose(self) -> None: ...


class CompletionTransport(Protocol):
    async def post(self, url: str, body: bytes) -> EngineResponse:
        """Send a JSON body; returns once the status and headers are in."""
        ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """One aiohttp session per process, made on first use (it must be made inside the running event loop)."""

    def __init__(self, read_timeout_s: float, connect_timeout_s: float = 5.0, max_connections: int = 2000) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Idle connections are dropped after 4 s, before the engine's server drops them (uvicorn, as vLLM runs it,
        # closes them after 5 s): a request is never sent on a connection the engine is closing.
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=4.0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,  # the body is relayed as the engine sent it
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    async def post(self, url: str, body: bytes) -> EngineResponse:
        session = self._session or self._open()
        retried = False
        while True:
            try:
                response = await session.post(url, data=body, headers=_JSON)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                raise ConnectFailed(exc) from exc
            except aiohttp.ServerTimeoutError as exc:
                raise ReadTimeout(exc) from exc
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
                # A kept-alive connection the engine closed as the request went out. A completion changes nothing
                # in the engine, so it is sent once more, on another connection: what aiohttp (and RFC 9112,
                # 9.3.1) do for idempotent requests, and what httpx's check of a connection before reuse avoided.
                if retried:
                    raise TransportError(exc) from exc
                log.info("engine connection lost before an answer (%s); sending the request once more", exc)
                retried = True
            except aiohttp.ClientError as exc:
                raise TransportError(exc) from exc
            else:
                return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _AiohttpResponse:
    __slots__ = ("_response", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except aiohttp.ServerTimeoutError as exc:
            raise ReadTimeout(exc) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(exc) from exc

    def chunks(self) -> AsyncIterator[bytes]:
        return _Chunks(self._response.content)

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # read to the end: the connection goes back to the pool
        else:
            self._response.close()  # closing the connection is what tells the engine to abort the request


class _Chunks:
    """A body's bytes as they arrive, straight from aiohttp's reader: one call a chunk of a stream, no generator
    between (a stream is ~20 of them)."""

    __slots__ = ("_content",)

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._content.readany()
        except aiohttp.ServerTimeoutError as exc:
            raise ReadTimeout(exc) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(exc) from exc
        if not data:
            raise StopAsyncIteration
        return data


class HttpxTransport:
    """The same interface on an httpx client: what the fast tests use, with the fake engine as its transport."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, url: str, body: bytes) -> EngineResponse:
        request = self._client.build_request("POST", url, content=body, headers=_JSON)
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ConnectFailed(exc) from exc
        except httpx.TimeoutException as exc:
            raise ReadTimeout(exc) from exc
        except httpx.HTTPError as exc:
            raise TransportError(exc) from exc
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        pass  # the client is the lifespan's, and closed there


class _HttpxResponse:
    __slots__ = ("_response", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.TimeoutException as exc:
            raise ReadTimeout(exc) from exc
        except httpx.HTTPError as exc:
            raise TransportError(exc) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.aiter_raw():
                yield data
        except httpx.TimeoutException as exc:
            raise ReadTimeout(exc) from exc
        except httpx.HTTPError as exc:
            raise TransportError(exc) from exc

    async def aclose(self) -> None:
        await self._response.aclose()
