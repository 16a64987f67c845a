"""The retrieval service the gateway holds: documents in, hits out, embeddings for /v1/embeddings.

Importing this module imports torch (through the embedder, lazily), sentence-transformers and FAISS: the gateway
imports it only when retrieval is on. Serving calls (`retrieve`, `embed_texts`) are coroutines that never block the
event loop; document calls are blocking (run them in a worker thread from async code).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import Engine

from retrieval.embedder import Embedder, shared_embedder
from retrieval.errors import InvalidQuery
from retrieval.hits import Hit, Position
from retrieval.indexes import Indexes, IndexInfo
from retrieval.settings import RetrievalSettings
from retrieval.store import ChunkInfo, DocumentInfo, DocumentStore
from retrieval.uploads import Upload, parse_uploads

log = logging.getLogger(__name__)

# (stage, done, total): stage is "embed" (chunks embedded) or "index" (vectors added to a rebuilt index).
IndexProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Embeddings:
    model: str
    vectors: np.ndarray  # float32, n x dim, L2-normalised
    token_counts: list[int]  # tokens of each input as embedded (cut to the model's limit): for `usage`

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)


class RetrievalService:
    """One per process. Thread-safe; `retrieve` and `embed_texts` are safe from any event loop or thread's loop."""

    def __init__(
        self,
        settings: RetrievalSettings,
        engine: Engine,
        index_dir: Path,
        *,
        embedder: Embedder | None = None,
    ) -> None:
        """`engine`: the gateway's database (migrated); `index_dir`: where FAISS files go (`var/indexes`)."""
        self.settings = settings
        self.store = DocumentStore(engine)
        self.embedder = embedder or shared_embedder(settings)
        self.indexes = Indexes(settings, self.store, self.embedder, index_dir)
        # Searches and the database reads for hits: off the event loop, apart from other thread-pool users.
        # One OpenMP thread each: a search is one vector, and threads spinning for a parallel region only steal CPU.
        self._search_pool = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="retrieval-search", initializer=faiss.omp_set_num_threads, initargs=(1,)
        )

    # Lifecycle

    async def start(self, *, warm_tenants: bool = False) -> None:
        """Load the model now instead of at the first request; optionally load every tenant's index too."""
        await asyncio.to_thread(self.embedder.load)
        if warm_tenants:
            await asyncio.to_thread(self.warm)

    def warm(self) -> None:
        """Load (or rebuild) the index of every tenant that has documents (blocking)."""
        for tenant_id in self.store.tenants():
            self.indexes.get(tenant_id)

    def close(self) -> None:
        """Finish background rebuilds and saves, stop the threads. The shared embedder stays for the process."""
        self.indexes.close()
        self._search_pool.shutdown(wait=True)

    # Serving (async)

    async def retrieve(
        self,
        tenant_id: str,
        query: str,
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> list[Hit]:
        """The tenant's `top_k` chunks nearest to `query`, best first, with score >= `min_score`.

        Only this tenant's chunks: its own index, and every hit is read back from the database under this tenant
        (a chunk deleted anywhere is never returned). A blank query has no hits. InvalidQuery for `top_k` outside
        1..max_top_k or `min_score` outside -1..1.
        """
        top_k, min_score = self._check(top_k, min_score)
        if not tenant_id or not query.strip():
            return []
        vector = (await self.embedder.embed([query]))[0]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._search_pool, self.search_vector, tenant_id, vector, top_k, min_score)

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        """Embeddings for `POST /v1/embeddings`: one normalised vector per input, and token counts for `usage`."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise InvalidQuery("`input` must be a non-empty string or list of strings.", param="input")
        if len(texts) > self.settings.max_embedding_inputs:
            raise InvalidQuery(
                f"`input` has {len(texts)} items; at most {self.settings.max_embedding_inputs} are accepted.",
                param="input",
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InvalidQuery(f"`input[{i}]` must be a non-empty string.", param="input")
        vectors, counts = await self.embedder.embed_counting(texts)
        return Embeddings(self.embedder.name, vectors, counts)

    # Serving (blocking core, also for callers that have a vector already)

    def search_vector(self, tenant_id: str, vector: np.ndarray, top_k: int, min_score: float | None) -> list[Hit]:
        index = self.indexes.get(tenant_id)
        # Twice top_k from FAISS: room for chunks another process deleted since this index last caught up.
        found = index.search(vector, top_k * 2)
        if min_score is not None:
            found = [(i, s) for i, s in found if s >= min_score]
        chunks = self.store.hits(tenant_id, [i for i, _ in found])
        hits = []
        for chunk_id, score in found:
            chunk = chunks.get(chunk_id)
            if chunk is None:
                continue
            if chunk.tenant_id != tenant_id:  # the query above already filters; this is the last line of defence
                log.error("chunk %s of another tenant surfaced for %s; dropped", chunk_id, tenant_id)
                continue
            hits.append(_hit(chunk, score))
            if len(hits) == top_k:
                break
        return hits

    def _check(self, top_k: int | None, min_score: float | None) -> tuple[int, float | None]:
        top_k = self.settings.default_top_k if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= self.settings.max_top_k:
            raise InvalidQuery(f"`top_k` must be an integer from 1 to {self.settings.max_top_k}.", param="top_k")
        min_score = self.settings.default_min_score if min_score is None else min_score
        if min_score is not None and (
            isinstance(min_score, bool) or not isinstance(min_score, int | float) or not -1 <= min_score <= 1
        ):
            raise InvalidQuery("`min_score` must be a number from -1 to 1.", param="min_score")
        return top_k, min_score

    # Documents (blocking)

    def add_documents(
        self,
        tenant_id: str,
        uploads: Sequence[Upload],
        *,
        replace: bool = False,
        progress: IndexProgress | None = None,
    ) -> list[DocumentInfo]:
        """Check, chunk, embed and store every upload, all or none; then add the chunks to the loaded index.

        DocumentRejected (and its subclasses) before anything is embedded or stored. A document with the same name
        and content as a stored one is not stored twice (`existing=True`). `replace`: other documents with the same
        name are deleted in the same transaction (a new version of a file). Returns one DocumentInfo per upload.
        """
        documents = parse_uploads(uploads, self.settings)
        pieces = [piece for document in documents for piece in document.pieces]
        embed_progress = (lambda done, total: progress("embed", done, total)) if progress else None
        vectors = self.embedder.encode([piece.embedding_text() for piece in pieces], embed_progress)
        per_document, begin = [], 0
        for document in documents:
            per_document.append(vectors[begin : begin + len(document.pieces)])
            begin += len(document.pieces)
        added = self.store.add(tenant_id, documents, per_document, self.embedder.name, replace=replace)
        if added.generation is not None:
            if added.removed_chunk_ids:
                self.indexes.removed(tenant_id, added.removed_chunk_ids, added.generation)
            self.indexes.added(tenant_id, added.chunk_ids, added.vectors, added.generation)
        return added.documents

    def list_documents(self, tenant_id: str, *, limit: int = 100, after: str | None = None) -> list[DocumentInfo]:
        return self.store.documents(tenant_id, limit=limit, after=after)

    def get_document(self, tenant_id: str, document_id: str) -> DocumentInfo:
        """DocumentNotFound if it does not exist or is another tenant's."""
        return self.store.get(tenant_id, document_id)

    def document_chunks(self, tenant_id: str, document_id: str) -> list[ChunkInfo]:
        return self.store.chunks(tenant_id, document_id)

    def delete_document(self, tenant_id: str, document_id: str) -> DocumentInfo:
        """Delete a document and its chunks; none of them is returned by any query from now on."""
        info, chunk_ids, generation = self.store.delete(tenant_id, document_id)
        self.indexes.removed(tenant_id, chunk_ids, generation)
        return info

    def delete_tenant(self, tenant_id: str) -> int:
        """Delete all of a tenant's documents and its index files (when the tenant is deleted); returns the count."""
        count = self.store.delete_tenant(tenant_id)
        self.indexes.forget(tenant_id)
        return count

    # Indexes (blocking)

    def rebuild(self, tenant_id: str, progress: IndexProgress | None = None) -> Future[None]:
        """Rebuild the tenant's index in the background and swap it in; queries go on meanwhile."""
        index_progress = (lambda done, total: progress("index", done, total)) if progress else None
        return self.indexes.rebuild(tenant_id, index_progress)

    def index_info(self, tenant_id: str) -> IndexInfo:
        return self.indexes.info(tenant_id)

    def wait(self, timeout: float | None = None) -> None:
        """Block until background rebuilds and saves queued so far have finished."""
        self.indexes.wait(timeout)


def _hit(chunk: ChunkInfo, score: float) -> Hit:
    return Hit(
        chunk_id=chunk.id,
        document_id=chunk.document_id,
        document_name=chunk.document_name,
        position=Position(chunk.position, chunk.start, chunk.end, chunk.line),
        text=chunk.text,
        score=score,
        metadata=chunk.metadata,
    )
