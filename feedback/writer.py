"""The interaction writer: takes rows from the request path without blocking it, writes them in batches on a thread.

What happens when the writer cannot keep up, chosen and written down (DESIGN.md: never a silent drop):

1. Normal: `submit` appends to an in-memory queue (no I/O, no lock held during I/O); a background thread takes
   up to `batch_size` rows, or what came within `flush_interval_s`, and inserts them in one transaction.
2. Database unavailable (PostgreSQL restarting, a SQLite lock held past `write_timeout_s`, a missing table): the
   batch is appended to a spill file under `spill_dir` (JSONL, fsync'd) and so is every later batch, without
   waiting on the database, until a retry every `retry_interval_s` succeeds; then the spill files are replayed
   (interleaved with live batches). Spill files left by a crash or by a shutdown during an outage are replayed by
   the next writer on the same directory. Inserts skip ids already there, so a replay never duplicates a row.
3. Even the spill cannot keep up (the queue holds `max_queue` rows: the disk is full or failing, or the thread is
   starved): `admit()` raises `RecordBackpressure`. The gateway calls it before it serves a completion and
   answers 503 with Retry-After, so a completion is refused rather than served and not recorded; `submit` of
   one already admitted never refuses. Back-pressure,
   not dropping, because a served-but-unrecorded interaction cannot be rated or trained on, and a 503 is one the
   client retries. Rows already accepted stay in the queue and are written once the disk or database recovers.
4. Rows the database refuses as data (a NUL character, a lone surrogate) are written again scrubbed; a row refused
   even then goes to a `rejected-*.jsonl` file beside the spill and is counted, so one bad row never blocks the
   queue and is never dropped unseen.

What is not covered: rows still in memory when the process is killed (SIGKILL, OOM) are lost; that is at most the
rows of the last `flush_interval_s` plus whatever an outage had queued. `close()` writes or spills everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Engine

from feedback.bulk import Inserter, inserter_for, is_row_error, scrub
from feedback.errors import RecordBackpressure
from feedback.interaction import Interaction
from feedback.settings import RecordSettings
from feedback.spill import SpillDir, SpillReplay

log = logging.getLogger(__name__)

RESCAN_S = 30.0  # how often an idle writer looks for spill files left by a process that died


@dataclass
class WriterStats:
    """Counters for metrics. Totals since start, except `queued`, `pending` and `spilling` (now)."""

    accepted: int = 0  # rows taken by submit()
    written: int = 0  # rows inserted by live batches
    spilled: int = 0  # rows written to a spill file
    replayed: int = 0  # rows inserted from spill files (spilled here or by an earlier process)
    rejected: int = 0  # rows the database refused even scrubbed, kept in rejected-*.jsonl
    batches: int = 0  # transactions committed (live and replay)
    backpressure: int = 0  # submit() calls refused with RecordBackpressure
    errors: int = 0  # failed database or spill attempts
    last_error: str | None = None
    last_error_at: float | None = None  # time.time()
    spilling: bool = False  # the database is being bypassed for now
    queued: int = 0  # rows in memory, neither written nor spilled
    pending: int = 0  # rows accepted here and not yet in the database (queued + spilled by this process)


class _FlushMarker:
    """Put in the queue by flush(): set once every row ahead of it is written or spilled."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class InteractionWriter:
    def __init__(self, engine: Engine, settings: RecordSettings, spill_dir: Path) -> None:
        self._engine = engine
        self._settings = settings
        self._inserter: Inserter = inserter_for(engine)
        self._spill = SpillDir(spill_dir)
        self._queue: deque[Interaction | _FlushMarker] = deque()
        self._pending: dict[str, str] = {}  # interaction id -> tenant id, until the row is in the database
        self._submit_lock = threading.Lock()  # guards max_queue and counters; never held during I/O
        self._wake = threading.Condition()  # the writer thread sleeps on it; never held during I/O
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._waiters_lock = threading.Lock()
        self._stats = WriterStats()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._next_retry = 0.0
        self._next_scan = 0.0
        self._markers = 0  # flush markers in the queue: while there is one, the thread does not linger
        self._replays: deque[Path] = deque()
        self._replay: SpillReplay | None = None
        self._replay_chunks: Iterator[list[Interaction]] = iter(())

    # The request path (event loop thread): no I/O, no lock held during I/O.

    def admit(self) -> None:
        """Raise RecordBackpressure if a completion served now could not be recorded; call before serving."""
        if len(self._queue) >= self._settings.max_queue:
            with self._submit_lock:
                self._stats.backpressure += 1
            raise RecordBackpressure(
                f"the record is {len(self._queue)} rows behind; try again shortly",
                retry_after_s=self._settings.retry_interval_s,
            )

    def submit(self, interaction: Interaction) -> None:
        """Accept one interaction for writing. Never refuses: a completion that passed `admit()` has been served,
        so its row is taken even above `max_queue` (by at most the requests in flight)."""
        if not self._settings.enabled:
            return
        if self._closed:
            self._submit_after_close(interaction)
            return
        with self._submit_lock:
            self._pending[interaction.id] = interaction.tenant_id
            self._queue.append(interaction)
            self._stats.accepted += 1
            size = len(self._queue)
        # Wake the thread only when it may be asleep on an empty queue, or when a batch is full: a notify per
        # row would wake it tens of thousands of times a second while it lingers for a batch.
        if size == 1 or size == self._settings.batch_size:
            with self._wake:
                self._wake.notify()

    def _submit_after_close(self, interaction: Interaction) -> None:
        # A request that outlived shutdown: written straight to the spill (blocking, but only in this corner),
        # for the next start to replay, rather than queued for a thread that is gone.
        log.warning("record: interaction %s submitted after close(); spilled for the next start", interaction.id)
        try:
            self._spill.append([interaction])
            self._spill.seal()
        except OSError as exc:
            raise RecordBackpressure(f"the record is closed and its spill failed: {exc}") from exc

    def pending_tenant(self, interaction_id: str) -> str | None:
        """The tenant of an interaction accepted here and not yet in the database; None otherwise."""
        return self._pending.get(interaction_id)

    async def wait_written(self, interaction_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until an interaction accepted here is in the database. True at once for one not pending here
        (written already, or never seen by this process); False if still pending after `timeout` seconds."""
        if interaction_id not in self._pending:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._waiters_lock:
            self._waiters.setdefault(interaction_id, []).append(future)
        try:
            if interaction_id not in self._pending:  # written between the first check and registering
                return True
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._waiters_lock:
                futures = self._waiters.get(interaction_id)
                if futures and future in futures:
                    futures.remove(future)
                    if not futures:
                        del self._waiters[interaction_id]

    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        return replace(self._stats, queued=len(self._queue), pending=len(self._pending))

    # Lifecycle (blocking: call from a thread, e.g. `anyio.to_thread.run_sync`, or at startup/shutdown).

    def start(self) -> None:
        """Start the thread; it first replays spill files left by an earlier process."""
        if self._thread is not None or not self._settings.enabled:
            return
        self._scan()
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row submitted before this call is written or spilled. False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return not self._queue
        marker = _FlushMarker()
        with self._submit_lock:
            self._markers += 1
            self._queue.append(marker)
        with self._wake:
            self._wake.notify()
        return marker.event.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Write or spill everything still queued, then stop the thread. False if it did not finish in time
        (rows left in memory are then lost with the process: the log says how many)."""
        if self._thread is not None:
            self._stopping = True
            with self._wake:
                self._wake.notify()
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("record: writer did not finish in %ss; %d rows still in memory", timeout, len(self._queue))
                return False
            self._thread = None
        self._closed = True
        # Rows of a writer never started, or submitted while the thread was exiting: to the spill, not lost.
        self._spill_everything()
        self._spill.seal()
        return not self._queue

    # The writer thread.

    def _run(self) -> None:
        lower_priority(self._settings.writer_nice)
        try:
            while True:
                items = self._take()
                if items is None:
                    break
                if items:
                    self._handle(items)
                if self._stats.spilling:
                    if time.monotonic() >= self._next_retry:
                        self._resume()
                elif self._replay or self._replays:
                    self._replay_step()
                elif time.monotonic() >= self._next_scan:
                    self._scan()
        except BaseException:  # a bug: keep the rows on disk rather than lose them with the thread
            log.exception("record: writer thread failed")
            self._spill_everything()
            raise
        finally:
            if self._replay is not None:
                self._replay.release()
                self._replay = None
            self._spill.seal()

    def _take(self) -> list[Interaction | _FlushMarker] | None:
        """The next batch; [] when there is other work (a replay, a retry) to do; None when stopping and empty."""
        settings = self._settings
        with self._wake:
            while not self._queue:
                if self._stopping:
                    return None
                if self._stats.spilling:
                    wait = self._next_retry - time.monotonic()
                    if wait <= 0:
                        return []
                elif self._replay or self._replays:
                    return []
                else:
                    wait = self._next_scan - time.monotonic()
                    if wait <= 0:
                        return []
                self._wake.wait(wait)
            # Linger for a fuller batch, unless someone waits on it (flush, shutdown) or a replay is in progress.
            deadline = time.monotonic() + settings.flush_interval_s
            while (
                len(self._queue) < settings.batch_size and not self._stopping and not self._replay and not self._markers
            ):
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                self._wake.wait(wait)
        items: list[Interaction | _FlushMarker] = []
        rows = 0
        while self._queue and rows < settings.batch_size:
            item = self._queue.popleft()
            items.append(item)
            if isinstance(item, Interaction):
                rows += 1
            else:
                with self._submit_lock:
                    self._markers -= 1
        return items

    def _handle(self, items: list[Interaction | _FlushMarker]) -> None:
        batch = [item for item in items if isinstance(item, Interaction)]
        if batch and not self._stats.spilling:
            try:
                self._insert(batch)
                self._stats.written += len(batch)
                batch = []
            except Exception as exc:
                self._failed(exc, "insert")
        if batch and not self._to_spill(batch):
            # Not even the disk took it: back to the front of the queue, markers included, and retry later.
            # The queue now grows towards max_queue, where submit() starts refusing.
            with self._submit_lock:
                self._markers += sum(isinstance(item, _FlushMarker) for item in items)
                self._queue.extendleft(reversed(items))
            time.sleep(min(self._settings.retry_interval_s, 1.0))
            return
        for item in items:
            if isinstance(item, _FlushMarker):
                item.event.set()

    def _insert(self, batch: Sequence[Interaction], scrubbed: bool = False) -> None:
        """Insert a batch. Rows refused as data are retried scrubbed (one transaction), then found by halves and
        rejected to a file. Raises only when the database itself is unavailable (the caller spills)."""
        try:
            self._inserter.insert(self._engine, batch, self._settings.write_timeout_s)
            self._stats.batches += 1
        except Exception as exc:
            if not is_row_error(exc):
                raise
            if not scrubbed:
                self._insert([scrub(interaction) for interaction in batch], scrubbed=True)
            elif len(batch) > 1:  # log2(batch) more transactions per bad row; a bad row is rare
                middle = len(batch) // 2
                self._insert(batch[:middle], scrubbed=True)
                self._insert(batch[middle:], scrubbed=True)
            else:
                self._spill.reject(batch, repr(exc))
                self._stats.rejected += 1
                self._note_error(exc)
                self._written(batch)  # not pending any more: it will not reach the database by itself
            return
        self._written(batch)

    def _written(self, batch: Sequence[Interaction]) -> None:
        for interaction in batch:
            self._pending.pop(interaction.id, None)
        if self._waiters:
            with self._waiters_lock:
                for interaction in batch:
                    for future in self._waiters.pop(interaction.id, ()):
                        # RuntimeError: its event loop is closed, so no one is waiting any more.
                        with contextlib.suppress(RuntimeError):
                            future.get_loop().call_soon_threadsafe(_resolve, future)

    def _to_spill(self, batch: Sequence[Interaction]) -> bool:
        try:
            self._spill.append(batch)
        except OSError as exc:
            self._spill.seal()  # a half-written file is closed; the next append starts a new one
            self._failed(exc, "spill")
            return False
        self._stats.spilled += len(batch)
        return True

    def _failed(self, exc: BaseException, what: str) -> None:
        if not self._stats.spilling:
            log.warning("record: %s failed, spilling to %s until the database is back: %r", what, self._spill.path, exc)
        self._note_error(exc)
        self._stats.spilling = True
        self._next_retry = time.monotonic() + self._settings.retry_interval_s

    def _note_error(self, exc: BaseException) -> None:
        self._stats.errors += 1
        self._stats.last_error = repr(exc)[:1000]
        self._stats.last_error_at = time.time()

    def _resume(self) -> None:
        """Time to try the database again: the files spilled so far are replayed first; a failure spills again."""
        self._stats.spilling = False
        self._spill.seal()
        self._scan()
        if self._replay or self._replays:
            self._replay_step()

    def _scan(self) -> None:
        """Queue the spill files on disk for replay: this writer's, and those of a process that died (its lock
        went with it). Files a live writer holds are skipped when claimed."""
        self._next_scan = time.monotonic() + RESCAN_S
        known = {*self._replays, *([self._replay.path] if self._replay else [])}
        self._replays.extend(path for path in self._spill.waiting() if path not in known)

    def _replay_step(self) -> None:
        """Replay one chunk of spill, so live batches keep flowing during a long replay."""
        if self._replay is None:
            while self._replays and self._replay is None:
                claimed = self._spill.claim(self._replays.popleft())
                if claimed is not None:
                    self._replay = claimed
                    self._replay_chunks = claimed.chunks(self._settings.batch_size)
            if self._replay is None:
                return
        chunk = next(self._replay_chunks, None)
        if chunk is None:
            self._replay.done()
            log.info("record: replayed %s", self._replay.path.name)
            self._replay = None
            return
        try:
            if chunk:
                self._insert(chunk)
        except Exception as exc:
            # The chunk stays in the file; the file is read again from the start next time (inserts skip ids
            # already there), so release it rather than keep a half-read handle.
            self._replay.release()
            self._replays.appendleft(self._replay.path)
            self._replay = None
            self._failed(exc, "replay")
            return
        self._stats.replayed += len(chunk)

    def _spill_everything(self) -> None:
        items = []
        while self._queue:
            items.append(self._queue.popleft())
        batch = [item for item in items if isinstance(item, Interaction)]
        if batch and not self._to_spill(batch):
            self._queue.extendleft(reversed(items))
            return
        for item in items:
            if isinstance(item, _FlushMarker):
                with self._submit_lock:
                    self._markers -= 1
                item.event.set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def lower_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority (Linux: a thread is a schedulable task with its own nice value).

    On a gateway process's core, the writer's batch (rows built, then inserted: a few milliseconds of CPU for a
    full batch) would otherwise run in front of a request that arrives meanwhile; measured with
    `python -m bench.gateway_overhead` (record on, SQLite, concurrency 1): added p99 2.3 ms at nice 0, 1.35 ms at
    nice 10, with the same CPU per request and the same throughput at saturation. Elsewhere it does nothing."""
    if nice <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, max(nice, os.getpriority(os.PRIO_PROCESS, thread)))  # never raised
    except OSError as exc:  # not allowed here (a container's seccomp policy): the writer runs as the process does
        log.info("record: writer priority unchanged (%s)", exc)
