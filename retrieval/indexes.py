"""Every tenant's index in this process: loaded on first use, kept in step with the database, rebuilt in the
background and swapped in whole, saved under `root/<tenant>/`.

The database is the truth. Whatever is loaded (a file, or nothing) is brought level with it by a diff of chunk
ids: ids the database has and the index lacks are added from their stored vectors, ids the index has and the
database lacks are removed. So a stale or half-old file costs a small catch-up, and a missing or unreadable one a
rebuild from stored vectors; neither re-embeds anything.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from retrieval.embedder import Embedder
from retrieval.index import HnswParams, Kind, Progress, TenantIndex
from retrieval.settings import RetrievalSettings
from retrieval.store import DocumentStore

log = logging.getLogger(__name__)

# An HNSW index shrinking below the threshold is kept until it falls under this share of it, so a tenant hovering
# at the threshold does not rebuild back and forth with every upload and delete.
DOWNGRADE_AT = 0.9


@dataclass(frozen=True)
class IndexInfo:
    tenant_id: str
    kind: Kind
    live: int  # chunks a search can return
    tombstones: int  # deleted chunks still inside an HNSW graph, skipped at query time
    generation: int  # the database change counter this index is known to reflect
    model: str
    rebuilding: bool
    path: str


@dataclass
class _Tenant:
    lock: threading.RLock = field(default_factory=threading.RLock)  # one writer: load, add, remove, swap
    index: TenantIndex | None = None
    generation: int = -1
    checked_at: float = 0.0
    queued_rebuild: Future[None] | None = None  # submitted, not started: further requests share it
    running_rebuild: Future[None] | None = None
    save_queued: bool = False


class Indexes:
    """Thread-safe. Blocking methods: call them from worker threads, not from the event loop."""

    def __init__(self, settings: RetrievalSettings, store: DocumentStore, embedder: Embedder, root: Path) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.root = Path(root)
        self.hnsw = HnswParams(settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()
        # One background thread for rebuilds and saves: they are CPU-bound, and queries must keep a core.
        self._builder = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="retrieval-build",
            initializer=faiss.omp_set_num_threads,  # OpenMP settings are per thread
            initargs=(settings.index_threads,),
        )

    # Reading

    def get(self, tenant_id: str) -> TenantIndex:
        """The tenant's current index: loaded (or built) on first use, caught up with the database every
        `sync_interval_s`. The object returned stays valid even if a rebuild swaps in a new one meanwhile."""
        state = self._state(tenant_id)
        if state.index is None:
            with state.lock:
                if state.index is None:
                    self._load(tenant_id, state)
        elif time.monotonic() - state.checked_at >= self.settings.sync_interval_s:
            self._sync(tenant_id, state)
        assert state.index is not None
        return state.index

    def info(self, tenant_id: str) -> IndexInfo:
        state = self._state(tenant_id)
        index = self.get(tenant_id)
        return IndexInfo(
            tenant_id=tenant_id,
            kind=index.kind,
            live=index.live,
            tombstones=index.tombstones,
            generation=state.generation,
            model=self.embedder.name,
            rebuilding=state.queued_rebuild is not None or state.running_rebuild is not None,
            path=str(self.path(tenant_id)),
        )

    def path(self, tenant_id: str) -> Path:
        # A tenant id is a directory name only when it is plainly safe; anything else gets a hash.
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", tenant_id):
            return self.root / tenant_id
        return self.root / ("t_" + hashlib.sha256(tenant_id.encode()).hexdigest()[:32])

    # Changes committed to the database by this process

    def added(self, tenant_id: str, ids: np.ndarray, vectors: np.ndarray, generation: int) -> None:
        """Chunks just committed: into the loaded index at once (a tenant not loaded picks them up at load)."""
        state = self._state(tenant_id)
        with state.lock:
            if state.index is None:
                return
            state.index.add(ids, vectors)
            self._advance(state, generation)
            self._after_change(tenant_id, state)

    def removed(self, tenant_id: str, ids: list[int], generation: int) -> None:
        """Chunks just deleted: never returned from now on (hits are also read back from the database)."""
        state = self._state(tenant_id)
        with state.lock:
            if state.index is None:
                return
            state.index.remove(ids)
            self._advance(state, generation)
            self._after_change(tenant_id, state)

    def forget(self, tenant_id: str) -> None:
        """Drop the tenant's index from memory and disk (after its documents were deleted)."""
        state = self._state(tenant_id)
        with state.lock, self._lock:
            self._tenants.pop(tenant_id, None)
            shutil.rmtree(self.path(tenant_id), ignore_errors=True)

    # Background work

    def rebuild(self, tenant_id: str, progress: Progress | None = None) -> Future[None]:
        """Build a fresh index from the stored vectors in the background, then swap it in under the tenant's lock.
        Queries keep using the old one meanwhile. A rebuild already waiting to start is shared, not repeated."""
        state = self._state(tenant_id)
        with state.lock:
            if state.queued_rebuild is not None:
                return state.queued_rebuild
            future = self._builder.submit(self._rebuild, tenant_id, state, progress)
            state.queued_rebuild = future
            return future

    def wait(self, timeout: float | None = None) -> None:
        """Block until background rebuilds and saves queued so far are done (tests, shutdown, the CLI)."""
        self._builder.submit(lambda: None).result(timeout)
        # A rebuild may have queued a save behind the marker.
        self._builder.submit(lambda: None).result(timeout)

    def close(self) -> None:
        """Finish queued work and stop the background thread."""
        self._builder.shutdown(wait=True)

    # Internals

    def _state(self, tenant_id: str) -> _Tenant:
        with self._lock:
            state = self._tenants.get(tenant_id)
            if state is None:
                state = self._tenants[tenant_id] = _Tenant()
            return state

    def _load(self, tenant_id: str, state: _Tenant) -> None:
        self._reembed_stale(tenant_id)
        generation = self.store.generation(tenant_id)  # read first: a change after it triggers another sync
        loaded = TenantIndex.load(self.path(tenant_id), self.hnsw)
        index: TenantIndex | None = None
        if loaded is not None:
            candidate, meta = loaded
            if meta.get("model") == self.embedder.name and candidate.dim == self.embedder.dim:
                index = candidate
        from_file = index is not None
        if index is None:
            index = self._fresh(tenant_id)
        changed = self._catch_up(tenant_id, index)
        state.index, state.generation, state.checked_at = index, generation, time.monotonic()
        if self._needs_rebuild(index):
            self.rebuild(tenant_id)
        elif changed or (not from_file and index.live):  # no file for a tenant that has never had documents
            self._queue_save(tenant_id, state)
        log.info("index of %s loaded: %s, %d chunks", tenant_id, index.kind, index.live)

    def _sync(self, tenant_id: str, state: _Tenant) -> None:
        """Catch up with changes made by other processes. One thread does it; the others search meanwhile."""
        if not state.lock.acquire(blocking=False):
            return
        try:
            state.checked_at = time.monotonic()
            generation = self.store.generation(tenant_id)
            if generation == state.generation or state.index is None:
                return
            changed = self._catch_up(tenant_id, state.index)
            state.generation = generation
            if changed:
                self._after_change(tenant_id, state)
        finally:
            state.lock.release()

    def _catch_up(self, tenant_id: str, index: TenantIndex) -> bool:
        """Make the index hold exactly the database's chunks of this tenant; True if anything changed."""
        stored = self.store.chunk_ids(tenant_id)
        present = index.live_ids()
        missing = np.setdiff1d(stored, present, assume_unique=True)
        extra = np.setdiff1d(present, stored, assume_unique=True)
        if len(extra):
            index.remove(extra.tolist())
        for ids, vectors in self.store.vectors(tenant_id, missing) if len(missing) else ():
            index.add(ids, vectors)
        return bool(len(missing) or len(extra))

    def _fresh(self, tenant_id: str, progress: Progress | None = None) -> TenantIndex:
        """A new index of the kind the tenant's size calls for, filled from the stored vectors."""
        total = self.store.count(tenant_id)
        kind: Kind = "hnsw" if total >= self.settings.hnsw_threshold else "flat"
        index = TenantIndex.empty(kind, self.embedder.dim, self.hnsw)
        done = 0
        for ids, vectors in self.store.vectors(tenant_id):
            index.add(ids, vectors)
            done += len(ids)
            if progress is not None:
                progress(min(done, total), total)
        return index

    def _rebuild(self, tenant_id: str, state: _Tenant, progress: Progress | None) -> None:
        with state.lock:
            state.running_rebuild, state.queued_rebuild = state.queued_rebuild, None
        try:
            started = time.monotonic()
            fresh = self._fresh(tenant_id, progress)  # no lock held: queries and writes go on meanwhile
            with state.lock:
                # Writes committed during the build are in the database; writes after this point wait for the
                # lock and then go to the fresh index. So the swap loses nothing.
                generation = self.store.generation(tenant_id)
                self._catch_up(tenant_id, fresh)
                state.index, state.generation = fresh, generation
            log.info(
                "index of %s rebuilt: %s, %d chunks in %.1fs",
                tenant_id,
                fresh.kind,
                fresh.live,
                time.monotonic() - started,
            )
            self._save(tenant_id, state)
        except Exception:
            log.exception("rebuild of the index of %s failed; the previous index stays in use", tenant_id)
            raise
        finally:
            with state.lock:
                state.running_rebuild = None

    def _after_change(self, tenant_id: str, state: _Tenant) -> None:
        index = state.index
        if index is None or state.queued_rebuild is not None or state.running_rebuild is not None:
            return
        if self._needs_rebuild(index):
            self.rebuild(tenant_id)
        else:
            self._queue_save(tenant_id, state)

    def _needs_rebuild(self, index: TenantIndex) -> bool:
        """The index is of the wrong kind for its size, or holds too many tombstones."""
        threshold = self.settings.hnsw_threshold
        if index.kind == "flat":
            return index.live >= threshold
        too_small = index.live < threshold * DOWNGRADE_AT
        return too_small or index.tombstones > self.settings.compact_ratio * (index.live + index.tombstones)

    def _advance(self, state: _Tenant, generation: int) -> None:
        # Our own commit moved the counter by one: nothing else happened in between, no diff needed.
        if generation == state.generation + 1:
            state.generation = generation

    def _queue_save(self, tenant_id: str, state: _Tenant) -> None:
        if not state.save_queued:
            state.save_queued = True
            self._builder.submit(self._save, tenant_id, state)

    def _save(self, tenant_id: str, state: _Tenant) -> None:
        state.save_queued = False  # first: a change made while writing queues another save
        index = state.index
        if index is None or self._tenants.get(tenant_id) is not state:  # forgotten meanwhile
            return
        try:
            index.save(self.path(tenant_id), {"model": self.embedder.name, "generation": state.generation})
        except OSError:
            log.exception("could not save the index of %s (it stays usable; the next start rebuilds it)", tenant_id)

    def _reembed_stale(self, tenant_id: str) -> None:
        """Chunks embedded with another model (the setting changed) are embedded again before any index use."""
        if self.store.models(tenant_id) <= {self.embedder.name}:
            return
        log.warning("re-embedding chunks of %s with %s", tenant_id, self.embedder.name)
        for ids, texts in self.store.texts_not_embedded_with(tenant_id, self.embedder.name):
            self.store.set_embeddings(ids, self.embedder.encode(texts))
        self.store.set_model(tenant_id, self.embedder.name)
