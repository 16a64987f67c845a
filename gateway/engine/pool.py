"""The engines behind the gateway: which are up, which adapters each holds, and where a request goes.

A reconcile loop checks every engine each `health_interval_s`: an engine that is down is taken out of rotation; an
engine that is up gets every wanted adapter (production and staged versions) loaded, so one that restarted is
brought back without anyone asking. A request goes to an up engine that holds its adapter, the least busy one,
ties broken by a stable hash so an adapter keeps to the same engine. A connection refused moves it to the next
engine; an engine 404 for a version the registry has means: load it there, retry once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from gateway.catalog import VersionRef
from gateway.engine.client import EngineClient, EngineRefused
from gateway.engine.transport import CompletionTransport, ConnectFailed, EngineResponse, HttpxTransport
from gateway.errors import EngineUnavailable

log = logging.getLogger(__name__)

PathFor = Callable[[str], Awaitable[str]]  # artifact -> a path the engine can load
FIRST_CHECK_WAIT_S = 10.0  # the health check's own timeout is 5 s


@dataclass
class Engine:
    client: EngineClient
    up: bool = False
    loaded: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)  # wanted here but not loaded (yet)
    inflight: int = 0
    failed_checks: int = 0  # consecutive failed health checks

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def ready(self) -> bool:
        return self.up and not self.missing


@dataclass
class Upstream:
    """An open request to one engine. Close it exactly once, when the response has been relayed."""

    engine: Engine
    response: EngineResponse
    engine_name: str | None
    _pool: EnginePool
    _closed: bool = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.response.aclose()
        finally:
            self._pool._release(self.engine, self.engine_name)


class EnginePool:
    def __init__(
        self,
        urls: list[str],
        http: httpx.AsyncClient,
        path_for: PathFor,
        *,
        retry_after_s: int = 5,
        down_after_checks: int = 2,
        transport: CompletionTransport | None = None,
    ) -> None:
        """`http` serves health checks and adapter loads; `transport` the completions (default: through `http`)."""
        self.engines = [Engine(EngineClient(url, http)) for url in urls]
        self._transport = transport or HttpxTransport(http)
        # One slow health check on a busy machine is not an engine down; a refused connection on a request is.
        self._down_after_checks = down_after_checks
        self._http = http
        self._path_for = path_for
        self._retry_after_s = retry_after_s
        self._inflight: Counter[str] = Counter()  # per engine name (adapter version), for draining
        self._drained = asyncio.Condition()
        self._draining = 0  # drain() calls waiting: a request that ends wakes them only when there are some
        # Set once every engine has been checked: a request that comes before (a worker that has just started,
        # next to others already serving) waits for that check rather than being told that no engine is up.
        self._checked = asyncio.Event()
        self._load_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def aclose(self) -> None:
        """Close the completions' connections (the management client `http` is its owner's to close)."""
        await self._transport.aclose()

    # Health and reconciliation.

    @property
    def ready(self) -> bool:
        return any(engine.ready for engine in self.engines)

    async def reconcile(self, wanted: dict[str, VersionRef]) -> None:
        await asyncio.gather(*(self._reconcile(engine, wanted) for engine in self.engines))
        self._checked.set()

    async def _reconcile(self, engine: Engine, wanted: dict[str, VersionRef]) -> None:
        try:
            if not await engine.client.healthy():
                raise httpx.ConnectError("health check failed")
            engine.loaded = await engine.client.loaded_adapters()
        except (httpx.HTTPError, ValueError, KeyError):
            engine.failed_checks += 1
            if engine.up and engine.failed_checks >= self._down_after_checks:
                log.warning("engine %s is down; taking it out of rotation", engine.url)
                engine.up, engine.loaded, engine.missing = False, set(), set(wanted)
            return
        engine.failed_checks = 0
        if not engine.up:
            log.info("engine %s is up; loading %d adapters", engine.url, len(wanted.keys() - engine.loaded))
        engine.missing = set(wanted) - engine.loaded
        engine.up = True
        for name in sorted(engine.missing):
            try:
                await self._load(engine, wanted[name])
            except (EngineRefused, httpx.HTTPError) as exc:
                log.error("engine %s could not load %s: %s", engine.url, wanted[name].public_name, exc)
        engine.missing = set(wanted) - engine.loaded

    async def _load(self, engine: Engine, version: VersionRef) -> None:
        lock = self._load_locks.setdefault((engine.url, version.engine_name), asyncio.Lock())
        async with lock:
            if version.engine_name in engine.loaded:
                return
            await engine.client.load(version.engine_name, await self._path_for(version.artifact))
            engine.loaded.add(version.engine_name)
            engine.missing.discard(version.engine_name)

    async def load_everywhere(self, version: VersionRef) -> None:
        """Load a version on every engine that is up; the first refusal is raised (and nothing is left half-done)."""
        engines = [engine for engine in self.engines if engine.up]
        if not engines:
            raise EngineUnavailable(retry_after_s=self._retry_after_s)
        try:
            for engine in engines:
                await self._load(engine, version)
        except EngineRefused:
            await self.unload_everywhere(version.engine_name)
            raise

    async def unload_everywhere(self, engine_name: str) -> None:
        for engine in self.engines:
            if engine.up and engine_name in engine.loaded:
                try:
                    await engine.client.unload(engine_name)
                except (EngineRefused, httpx.HTTPError) as exc:
                    log.warning("engine %s could not unload %s: %s", engine.url, engine_name, exc)
                engine.loaded.discard(engine_name)

    async def drain(self, engine_name: str, timeout_s: float) -> bool:
        """Wait until no request of this replica runs on `engine_name`. False if the timeout came first."""
        self._draining += 1
        try:
            async with self._drained:
                try:
                    await asyncio.wait_for(self._drained.wait_for(lambda: self._inflight[engine_name] == 0), timeout_s)
                except TimeoutError:
                    return False
            return True
        finally:
            self._draining -= 1

    # Requests.

    async def request(self, path: str, body: bytes, version: VersionRef | None) -> Upstream:
        """Send a completion request (a JSON body) to the best engine; the caller owns (and must close) the returned
        Upstream. Raises TransportError when the engine's connection fails, EngineUnavailable when none is up."""
        engine_name = version.engine_name if version else None
        tried: set[str] = set()
        reloaded = False
        if not self._checked.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._checked.wait(), FIRST_CHECK_WAIT_S)
        while True:
            engine = self._pick(engine_name, exclude=tried)
            if version is not None and version.engine_name not in engine.loaded:
                await self._load_for_request(engine, version)
            self._acquire(engine, engine_name)
            try:
                response = await self._transport.post(engine.url + path, body)
            except ConnectFailed:
                # Nothing reached the engine, so another engine may safely take the request.
                self._release(engine, engine_name)
                engine.up = False
                tried.add(engine.url)
                continue
            except BaseException:
                self._release(engine, engine_name)
                raise
            if response.status == 404 and version is not None and not reloaded:
                # The engine lost the adapter (it restarted, or unloaded it): load it and retry once.
                await response.aclose()
                self._release(engine, engine_name)
                engine.loaded.discard(version.engine_name)
                reloaded = True
                continue
            return Upstream(engine, response, engine_name, self)

    def _pick(self, engine_name: str | None, exclude: set[str]) -> Engine:
        up = [engine for engine in self.engines if engine.up and engine.url not in exclude]
        if not up:
            raise EngineUnavailable(retry_after_s=self._retry_after_s)
        holding = [engine for engine in up if engine_name is None or engine_name in engine.loaded] or up
        key = (engine_name or "").encode()
        return min(holding, key=lambda engine: (engine.inflight, -zlib.crc32(key + engine.url.encode())))

    async def _load_for_request(self, engine: Engine, version: VersionRef) -> None:
        try:
            await self._load(engine, version)
        except (EngineRefused, httpx.HTTPError) as exc:
            log.error("engine %s could not load %s: %s", engine.url, version.public_name, exc)
            raise EngineUnavailable(
                f"The adapter `{version.public_name}` could not be loaded right now.", retry_after_s=self._retry_after_s
            ) from None

    def _acquire(self, engine: Engine, engine_name: str | None) -> None:
        engine.inflight += 1
        if engine_name:
            self._inflight[engine_name] += 1

    def _release(self, engine: Engine, engine_name: str | None) -> None:
        engine.inflight -= 1
        if engine_name:
            self._inflight[engine_name] -= 1
            if self._inflight[engine_name] <= 0:
                del self._inflight[engine_name]
                if self._draining:  # a task a request otherwise, for nobody
                    asyncio.get_running_loop().create_task(self._notify_drained())

    async def _notify_drained(self) -> None:
        async with self._drained:
            self._drained.notify_all()
