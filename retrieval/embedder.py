"""The sentence-transformers embedder: one model per process, run by one worker thread, queries ahead of indexing.

Every call goes through the worker's queue, so the model (and its tokenizer, which fails when two threads use it
at once) only ever runs on that thread, never on the event loop. Queries waiting together are encoded as one
batch; an upload's batches wait behind them, so a query waits at most one indexing batch.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.errors import EmbedderUnavailable
from retrieval.settings import RetrievalSettings

log = logging.getLogger(__name__)

# Queue priorities, lower first: retrieval queries and small embedding requests, large embedding requests, indexing.
QUERY, API, BULK = 0, 1, 2
Progress = Callable[[int, int], None]  # (texts done, texts in all)


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    texts: Sequence[str] = field(compare=False)
    future: Future[tuple[np.ndarray, list[int] | None]] = field(compare=False)
    count_tokens: bool = field(default=False, compare=False)


class Embedder:
    """Normalised float32 sentence embeddings. Thread-safe and loop-safe: call from any thread or coroutine."""

    def __init__(
        self, name: str, path: str, *, device: str = "cpu", batch_size: int = 32, threads: int | None = None
    ) -> None:
        self.name = name  # what documents record (a stable name, not this machine's path)
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._queue: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._work, name=f"embedder-{name}", daemon=True)
        self._thread.start()

    # Loading

    def load(self) -> None:
        """Load the model now (blocking; idempotent). Otherwise the first call loads it."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            try:
                import torch
                from sentence_transformers import SentenceTransformer

                if self.threads is not None:
                    torch.set_num_threads(self.threads)
                model = SentenceTransformer(self.path, device=self.device)
                model.eval()
            except Exception as exc:
                raise EmbedderUnavailable(f"The embedding model {self.name!r} could not be loaded: {exc}") from exc
            self._model = model
            log.info("embedding model %s loaded from %s on %s", self.name, self.path, self.device)

    @property
    def dim(self) -> int:
        self.load()
        return int(self._model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Inputs are cut to this many tokens before embedding."""
        self.load()
        return int(self._model.max_seq_length)

    # Calls

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts` (n x dim), computed on the worker thread ahead of any indexing work."""
        vectors, _ = await asyncio.wrap_future(self._submit(texts, QUERY, count_tokens=False))
        return vectors

    async def embed_counting(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors and the number of tokens of each text as embedded (after truncation to `max_tokens`).

        A request larger than one batch goes in batches behind queries, so it cannot hold them up for long.
        """
        priority = QUERY if len(texts) <= self.batch_size else API
        futures = [
            asyncio.wrap_future(self._submit(texts[begin : begin + self.batch_size], priority, count_tokens=True))
            for begin in range(0, len(texts), self.batch_size)
        ]
        results = await asyncio.gather(*futures)
        vectors = np.concatenate([v for v, _ in results]) if results else np.empty((0, self.dim), np.float32)
        return vectors, [n for _, counts in results for n in counts or []]

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Bulk embedding for indexing (blocking): batches of `batch_size` queued behind queries."""
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        futures = [
            self._submit(texts[begin : begin + self.batch_size], BULK, count_tokens=False)
            for begin in range(0, len(texts), self.batch_size)
        ]
        parts = []
        done = 0
        for future in futures:
            vectors, _ = future.result()
            parts.append(vectors)
            done += len(vectors)
            if progress is not None:
                progress(done, len(texts))
        return np.concatenate(parts)

    def _submit(self, texts: Sequence[str], priority: int, *, count_tokens: bool) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put(_Job(priority, next(self._seq), list(texts), future, count_tokens))
        return future

    # The worker thread

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            jobs = [job]
            if job.priority == QUERY:
                # Micro-batching: every query already waiting rides in the same forward pass.
                size = len(job.texts)
                while size < self.batch_size:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more.priority != QUERY:
                        self._queue.put(more)
                        break
                    jobs.append(more)
                    size += len(more.texts)
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]  # skips callers who gave up
            try:
                self._run(jobs)
            except Exception as exc:  # a bug must fail these calls, not kill the thread and hang every later one
                log.exception("embedding worker error")
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)

    def _run(self, jobs: list[_Job]) -> None:
        texts = [text for job in jobs for text in job.texts]
        try:
            self.load()
            vectors = self._encode(texts) if texts else np.empty((0, self.dim), dtype=np.float32)
            counts = self._count(texts) if any(job.count_tokens for job in jobs) else None
        except Exception as exc:
            error = exc if isinstance(exc, EmbedderUnavailable) else EmbedderUnavailable(f"Embedding failed: {exc}")
            for job in jobs:
                job.future.set_exception(error)
            return
        begin = 0
        for job in jobs:
            end = begin + len(job.texts)
            job.future.set_result((vectors[begin:end], counts[begin:end] if counts is not None else None))
            begin = end

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=max(self.batch_size, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _count(self, texts: list[str]) -> list[int]:
        encoded = self._model.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=self._model.max_seq_length
        )
        return [len(ids) for ids in encoded["input_ids"]]


_shared: dict[tuple[str, str], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(settings: RetrievalSettings) -> Embedder:
    """The process's embedder for these settings: the model is loaded once however many services ask."""
    key = (settings.embedding_model, settings.embedding_device)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder(
                settings.embedding_model,
                settings.model_path(),
                device=settings.embedding_device,
                batch_size=settings.batch_size,
                threads=settings.embedding_threads,
            )
        return _shared[key]
