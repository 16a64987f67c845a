"""Spill files: batches the database could not take, kept as fsync'd JSONL until they are replayed into it.

Each writer appends to a file of its own and holds an exclusive `flock` on it while it is open, so a replayer (this
writer later, a restarted gateway, another process on the same directory) skips a file that is still being
written. A file is deleted only once every row in it is in the database; a crash halfway through a replay
replays the file again, which is harmless because inserts skip ids already there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from io import TextIOWrapper
from itertools import islice
from pathlib import Path

from feedback.interaction import Interaction

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per spill directory there
    fcntl = None  # type: ignore[assignment]  # a module or None: mypy types the name from the import above

log = logging.getLogger(__name__)

SPILL_GLOB = "interactions-*.jsonl"


def _lock(handle: TextIOWrapper) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _new_name(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{kind}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"


def _append(handle: TextIOWrapper, batch: Sequence[Interaction]) -> None:
    # ensure_ascii: the spill must take any string, lone surrogates included.
    handle.write("".join(json.dumps(i.to_json(), default=str) + "\n" for i in batch))
    handle.flush()
    os.fsync(handle.fileno())


class SpillDir:
    """This writer's spill file, and the files waiting to be replayed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._current: TextIOWrapper | None = None

    def append(self, batch: Sequence[Interaction]) -> None:
        """Write the batch to this writer's file and fsync it. Raises OSError (disk full, read-only, ...)."""
        if self._current is None:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / _new_name("interactions"), "a", encoding="utf-8")  # noqa: SIM115 (kept open)
            _lock(handle)
            self._current = handle
        _append(self._current, batch)

    def seal(self) -> None:
        """Close this writer's file (and release its lock) so that it can be replayed."""
        if self._current is not None:
            self._current.close()
            self._current = None

    def reject(self, batch: Sequence[Interaction], reason: str) -> Path:
        """Keep rows the database refuses even scrubbed, for a person to look at; never replayed by itself."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / _new_name("rejected")
        with open(target, "a", encoding="utf-8") as handle:
            _append(handle, batch)
        log.error("record: %d interaction(s) refused by the database, kept in %s: %s", len(batch), target, reason)
        return target

    def waiting(self) -> list[Path]:
        """Spill files on disk, oldest first (the one this writer has open is skipped when claimed)."""
        if not self.path.is_dir():
            return []
        return sorted(self.path.glob(SPILL_GLOB))

    def claim(self, path: Path) -> SpillReplay | None:
        """Take a file for replay, or None when another writer or replayer holds it (or it is gone)."""
        if self._current is not None and Path(self._current.name) == path:
            return None
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 (closed by SpillReplay)
        except FileNotFoundError:
            return None
        if not _lock(handle):
            handle.close()
            return None
        return SpillReplay(path, handle)


class SpillReplay:
    """One claimed spill file, read a chunk at a time, deleted when done."""

    def __init__(self, path: Path, handle: TextIOWrapper) -> None:
        self.path = path
        self._handle = handle
        self.corrupt_lines = 0

    def chunks(self, size: int) -> Iterator[list[Interaction]]:
        while lines := list(islice(self._handle, size)):
            chunk = []
            for line in lines:
                try:
                    chunk.append(Interaction.from_json(json.loads(line)))
                except (ValueError, TypeError, KeyError):
                    # Only a line torn by a crash in the middle of a write can be unreadable; it was never fsync'd.
                    self.corrupt_lines += 1
                    log.warning("record: unreadable line in %s skipped", self.path)
            yield chunk

    def done(self) -> None:
        """Every row is in the database: delete the file (still holding its lock, so no one else starts on it)."""
        # FileNotFoundError: a replayer that opened it before us has already finished it.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._handle.close()

    def release(self) -> None:
        """Stop for now (the database went away again): the file stays for a later replay."""
        self._handle.close()
