"""The adapter lifecycle: registered → staged (loaded in the engine) → production → retired (DESIGN.md).

Promotion with no downtime: load the new version under its own opaque name on every engine, flip the alias in
one transaction, let requests still running on the old version finish, then unload it. A rollback is a promotion
back to the version before. Every step that can fail comes before the flip, so a failure changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session, sessionmaker

from gateway import registry
from gateway.adapter_check import BaseModel, check_adapter_dir, extract_archive
from gateway.adapter_store import AdapterStore
from gateway.catalog import CatalogHolder, VersionRef
from gateway.engine.client import EngineRefused
from gateway.engine.pool import EnginePool
from gateway.errors import AdapterRejected, EngineUnavailable, ModelNotFound, NotFound
from gateway.store.models import AdapterVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterLimits:
    base: BaseModel
    max_rank: int
    supported_modules: list[str]
    max_bytes: int


class AdapterLifecycle:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: AdapterStore,
        pool: EnginePool,
        catalog: CatalogHolder,
        limits: AdapterLimits,
        drain_timeout_s: float,
        unload_grace_s: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._pool = pool
        self._catalog = catalog
        self._limits = limits
        self._drain_timeout_s = drain_timeout_s
        self._unload_grace_s = unload_grace_s
        self._unloads: dict[str, asyncio.Task[None]] = {}  # at most one pending unload per version (engine name)

    async def register_dir(self, tenant_id: str, alias: str, path: Path, lineage: dict[str, Any]) -> AdapterVersion:
        return await self._register(tenant_id, alias, path, lineage)

    async def register_archive(
        self, tenant_id: str, alias: str, archive: IO[bytes], lineage: dict[str, Any]
    ) -> AdapterVersion:
        with tempfile.TemporaryDirectory(prefix="loraflow-upload-") as tmp:
            root = await asyncio.to_thread(extract_archive, archive, Path(tmp), self._limits.max_bytes)
            return await self._register(tenant_id, alias, root, lineage)

    async def _register(self, tenant_id: str, alias: str, path: Path, lineage: dict[str, Any]) -> AdapterVersion:
        limits = self._limits
        info = await asyncio.to_thread(
            check_adapter_dir,
            path,
            base=limits.base,
            max_rank=limits.max_rank,
            supported_modules=limits.supported_modules,
            max_bytes=limits.max_bytes,
        )
        version_id = secrets.token_hex(16)
        artifact = await asyncio.to_thread(self._store.put, version_id, path)
        try:
            version = await asyncio.to_thread(
                self._write, registry.add_version, tenant_id, alias, version_id, artifact, info, lineage
            )
        except BaseException:
            self._store.delete(artifact)
            raise
        await self._catalog.refresh()
        ref = await self._ref(tenant_id, alias, version.number)
        # Load it now: what the engine refuses is refused here, before anyone can route to it.
        try:
            await self._pool.load_everywhere(ref)
        except EngineRefused as exc:
            await asyncio.to_thread(self._write, registry.delete_version, version_id)
            self._store.delete(artifact)
            await self._catalog.refresh()
            raise AdapterRejected(f"The engine could not load the adapter: {exc}") from None
        except EngineUnavailable:
            log.warning("no engine up: %s registered, it will be loaded when staged or promoted", ref.public_name)
            return version
        await asyncio.to_thread(self._write, registry.set_state, version_id, "staged")
        await self._catalog.refresh()
        return await asyncio.to_thread(self._read_version, tenant_id, alias, version.number)

    async def stage(self, tenant_id: str, alias: str, number: int) -> AdapterVersion:
        ref = await self._ref(tenant_id, alias, number)
        await self._load(ref)
        if ref.state != "production":
            await asyncio.to_thread(self._write, registry.set_state, ref.id, "staged")
            await self._catalog.refresh()
        return await asyncio.to_thread(self._read_version, tenant_id, alias, number)

    async def retire(self, tenant_id: str, alias: str, number: int) -> AdapterVersion:
        """Take a non-production version out of the engines (e.g. a candidate the gate rejected)."""
        ref = await self._ref(tenant_id, alias, number)
        await asyncio.to_thread(self._write, registry.set_state, ref.id, "retired")
        await self._catalog.refresh()
        self._schedule_unload(ref)
        return await asyncio.to_thread(self._read_version, tenant_id, alias, number)

    async def promote(
        self, tenant_id: str, alias: str, number: int, reason: str = "", kind: str = "promote"
    ) -> AdapterVersion:
        ref = await self._ref(tenant_id, alias, number)
        await self._load(ref)
        previous_id = await asyncio.to_thread(self._flip, ref.id, kind, reason)
        catalog = await self._catalog.refresh()
        previous = next((v for v in catalog.versions.values() if v.id == previous_id), None)
        if previous is not None:
            self._schedule_unload(previous)
        return await asyncio.to_thread(self._read_version, tenant_id, alias, number)

    async def rollback(self, tenant_id: str, alias: str, reason: str = "") -> AdapterVersion:
        target = await asyncio.to_thread(self._rollback_target, tenant_id, alias)
        return await self.promote(tenant_id, alias, target.number, reason or "rollback", kind="rollback")

    async def archive(self, tenant_id: str, alias: str, number: int) -> Path:
        """A version's files as a .tar.gz in a temporary file (the caller deletes it): a trainer on another machine
        continues from the production adapter with it."""
        ref = await self._ref(tenant_id, alias, number)
        local = Path(await self._store.engine_path(ref.artifact))
        return await asyncio.to_thread(_tar_gz, local, ref.public_name)

    async def wait_idle(self) -> None:
        """Wait for pending drains and unloads (tests, shutdown)."""
        if self._unloads:
            await asyncio.gather(*self._unloads.values(), return_exceptions=True)

    async def _load(self, ref: VersionRef) -> None:
        pending = self._unloads.pop(ref.engine_name, None)
        if pending is not None:  # wanted again (a quick rollback): it must stay loaded
            pending.cancel()
        try:
            await self._pool.load_everywhere(ref)
        except EngineRefused as exc:
            raise AdapterRejected(f"The engine could not load {ref.public_name}: {exc}") from None

    async def _drain_and_unload(self, ref: VersionRef) -> None:
        if not await self._pool.drain(ref.engine_name, self._drain_timeout_s):
            log.warning("%s still had requests after %.0f s; unloading anyway", ref.public_name, self._drain_timeout_s)
        # Other replicas switch at their next registry poll; give them that long before the version goes.
        await asyncio.sleep(self._unload_grace_s)
        if ref.engine_name not in self._catalog.current.wanted():  # promoted again meanwhile: keep it
            await self._pool.unload_everywhere(ref.engine_name)

    def _schedule_unload(self, ref: VersionRef) -> None:
        """Drain, wait for other replicas to switch, unload. A version flipped out again restarts its wait."""
        pending = self._unloads.pop(ref.engine_name, None)
        if pending is not None:
            pending.cancel()
        task = asyncio.get_running_loop().create_task(self._drain_and_unload(ref))
        self._unloads[ref.engine_name] = task
        task.add_done_callback(functools.partial(self._unload_done, ref.engine_name))

    def _unload_done(self, engine_name: str, task: asyncio.Task[None]) -> None:
        if self._unloads.get(engine_name) is task:
            del self._unloads[engine_name]

    async def _ref(self, tenant_id: str, alias: str, number: int) -> VersionRef:
        catalog = await self._catalog.refresh()  # admin calls may follow another replica's change
        try:
            version = catalog.resolve(tenant_id, f"{alias}@{number}")[1]
            assert version is not None  # a pinned name always names a version
            return version
        except ModelNotFound:
            raise NotFound(f"No version {alias}@{number} for tenant `{tenant_id}`.", param="version") from None

    def _rollback_target(self, tenant_id: str, alias: str) -> AdapterVersion:
        with self._sessions() as session:
            return registry.rollback_target(session, registry.get_adapter(session, tenant_id, alias))

    def _flip(self, version_id: str, kind: str, reason: str) -> str | None:
        with self._sessions() as session:
            version = session.get(AdapterVersion, version_id)
            assert version is not None
            return registry.flip_production(session, version, kind, reason)

    def _write(self, func: Any, *args: Any) -> Any:
        with self._sessions() as session:
            return func(session, *args)

    def _read_version(self, tenant_id: str, alias: str, number: int) -> AdapterVersion:
        with self._sessions() as session:
            return registry.get_version(session, tenant_id, alias, number)


def _tar_gz(directory: Path, name: str) -> Path:
    handle, path = tempfile.mkstemp(prefix="loraflow-version-", suffix=".tar.gz")
    with os.fdopen(handle, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(directory, arcname=name)
    return Path(path)
