"""Wire types of the documents admin API. Nothing here carries a file path (an index's place on disk stays inside)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from gateway.retrieval_service import public_name

if TYPE_CHECKING:
    from retrieval.indexes import IndexInfo
    from retrieval.store import ChunkInfo, DocumentInfo


class Chunk(BaseModel):
    id: int = Field(description="The chunk's id: what a response's sources and the record name.")
    position: int = Field(description="Its index within the document.")
    start: int = Field(description="Offset of its first character in the document's text (JSONL: the line's).")
    end: int
    line: int | None = Field(description="JSONL: the line it comes from.")
    text: str
    metadata: dict[str, Any]

    @classmethod
    def of(cls, chunk: ChunkInfo) -> Chunk:
        return cls(id=chunk.id, position=chunk.position, start=chunk.start, end=chunk.end, line=chunk.line,
                   text=chunk.text, metadata=chunk.metadata)  # fmt: skip


class Document(BaseModel):
    id: str
    object: Literal["document"] = "document"
    name: str
    kind: str = Field(description="text, markdown or jsonl.")
    size_bytes: int
    sha256: str
    chunk_count: int
    metadata: dict[str, Any]
    embedding_model: str
    created_at: datetime
    existing: bool = Field(False, description="From an upload: the same name and content were stored already.")
    chunks: list[Chunk] | None = Field(
        None, description="With `?chunks=true`: how the document was cut.", exclude_if=lambda value: value is None
    )

    @classmethod
    def of(cls, info: DocumentInfo, chunks: list[ChunkInfo] | None = None) -> Document:
        return cls(
            id=info.id, name=info.name, kind=info.kind, size_bytes=info.size_bytes, sha256=info.sha256,
            chunk_count=info.chunk_count, metadata=info.metadata, embedding_model=public_name(info.embedding_model),
            created_at=info.created_at, existing=info.existing,
            chunks=None if chunks is None else [Chunk.of(chunk) for chunk in chunks],
        )  # fmt: skip


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Document]
    has_more: bool = False
    last_id: str | None = Field(None, description="Pass it as `after` for the next page.")


class DocumentDeleted(BaseModel):
    id: str
    object: Literal["document.deleted"] = "document.deleted"
    deleted: bool = True
    name: str
    chunk_count: int


class Index(BaseModel):
    object: Literal["index"] = "index"
    tenant_id: str
    kind: str = Field(description="flat (exact) or hnsw (approximate, above the size threshold).")
    chunks: int = Field(description="Chunks a search can return.")
    tombstones: int = Field(description="Deleted chunks still inside an HNSW graph until the next rebuild.")
    generation: int = Field(description="The tenant's change counter this index reflects.")
    embedding_model: str
    state: Literal["ready", "rebuilding"]

    @classmethod
    def of(cls, info: IndexInfo) -> Index:
        return cls(tenant_id=info.tenant_id, kind=info.kind, chunks=info.live, tombstones=info.tombstones,
                   generation=info.generation, embedding_model=public_name(info.model),
                   state="rebuilding" if info.rebuilding else "ready")  # fmt: skip
