"""One tenant's FAISS index: exact inner product or HNSW over normalised vectors, keyed by chunk id.

HNSW cannot remove entries, so removed ids become tombstones, skipped at query time until the next rebuild.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

Kind = Literal["flat", "hnsw"]
Progress = Callable[[int, int], None]  # (vectors done, vectors in all)
ADD_SLICE = 2048  # vectors added per hold of the lock, so queries interleave with a large add


@dataclass(frozen=True)
class HnswParams:
    m: int = 32
    ef_construction: int = 100
    ef_search: int = 96


class TenantIndex:
    """Searches are thread-safe: one lock around every FAISS call (FAISS allows concurrent searches, not a search
    during an add; searches are sub-millisecond, so one lock costs little). `add` and `remove` expect one writer at
    a time, which `Indexes` ensures with the tenant's lock."""

    def __init__(self, index: Any, kind: Kind, dim: int, hnsw: HnswParams) -> None:
        self._index = index  # faiss.IndexIDMap (Any: FAISS's SWIG classes have no useful types)
        self.kind: Kind = kind
        self.dim = dim
        self.hnsw = hnsw
        self._lock = threading.Lock()
        self._ids: set[int] = set(faiss.vector_to_array(index.id_map).tolist())
        self._tombstones: set[int] = set()
        if kind == "hnsw":
            graph: Any = faiss.downcast_index(index.index)
            graph.hnsw.efSearch = hnsw.ef_search

    @classmethod
    def empty(cls, kind: Kind, dim: int, hnsw: HnswParams) -> TenantIndex:
        inner: Any
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, hnsw.m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = hnsw.ef_construction
        else:
            inner = faiss.IndexFlatIP(dim)
        index: Any = faiss.IndexIDMap(inner)
        index.own_fields = True  # the id map frees the inner index; Python must not free it first
        inner.this.disown()
        return cls(index, kind, dim, hnsw)

    # Sizes

    @property
    def live(self) -> int:
        """Entries that are not tombstones: what a search can return."""
        return len(self._ids) - len(self._tombstones)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    def live_ids(self) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._ids - self._tombstones, dtype=np.int64)

    # Changes

    def add(self, ids: np.ndarray, vectors: np.ndarray, progress: Progress | None = None) -> int:
        """Add the vectors whose ids are not in the index yet; returns how many were added."""
        ids = np.asarray(ids, dtype=np.int64)
        keep = np.fromiter((i not in self._ids for i in ids.tolist()), dtype=bool, count=len(ids))
        ids, vectors = ids[keep], np.ascontiguousarray(vectors[keep], dtype=np.float32)
        for begin in range(0, len(ids), ADD_SLICE):
            part = ids[begin : begin + ADD_SLICE]
            with self._lock:
                self._index.add_with_ids(vectors[begin : begin + ADD_SLICE], part)
                self._ids.update(part.tolist())
            if progress is not None:
                progress(min(begin + ADD_SLICE, len(ids)), len(ids))
        return len(ids)

    def remove(self, ids: np.ndarray | list[int]) -> None:
        present = [int(i) for i in ids if int(i) in self._ids]
        if not present:
            return
        with self._lock:
            if self.kind == "flat":
                self._index.remove_ids(np.asarray(present, dtype=np.int64))
                self._ids.difference_update(present)
            else:
                self._tombstones.update(present)

    # Queries

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest live ids with their inner products (cosine, for normalised vectors), best first."""
        with self._lock:
            total = self._index.ntotal
            if total == 0:
                return []
            # Ask for enough extra to still have k after skipping tombstones.
            fetch = min(k + len(self._tombstones), total)
            scores, ids = self._index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), fetch)
            dead = self._tombstones
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1 and i not in dead]
        return found[:k]

    # Files

    def save(self, path: Path, meta: dict[str, object]) -> None:
        """Write index and meta atomically (temp file + rename each): a reader sees the old files or the new ones."""
        with self._lock:
            data = faiss.serialize_index(self._index)  # a snapshot under the lock; the slow write happens outside
            meta = {**meta, "kind": self.kind, "dim": self.dim, "entries": len(self._ids)}
        path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / "index.faiss", data.tobytes())
        _write_atomic(path / "meta.json", json.dumps(meta, indent=2).encode())

    @classmethod
    def load(cls, path: Path, hnsw: HnswParams) -> tuple[TenantIndex, dict[str, object]] | None:
        """The saved index and its meta, or None if they are missing or unreadable (then: rebuild)."""
        try:
            meta = json.loads((path / "meta.json").read_text())
            # read_index hands back the concrete class and owns it (a downcast copy would not: the C++ object
            # would be freed with the original proxy).
            index = faiss.read_index(str(path / "index.faiss"))
            kind = meta["kind"]
            if kind not in ("flat", "hnsw") or index.d != meta["dim"] or not isinstance(index, faiss.IndexIDMap):
                return None
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        return cls(index, kind, int(meta["dim"]), hnsw), meta


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
