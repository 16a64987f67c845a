"""Tables of retrieval: each tenant's documents, their chunks with embeddings, and a change counter per tenant.

The database is the truth; FAISS files under var/indexes/ are a cache of the `embedding` column, rebuilt from it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The same convention as the registry's tables (gateway/store/models.py), copied: retrieval/ never imports gateway/.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MAX_TENANT_CHARS = 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class CollectionRow(Base):
    """One per tenant with documents. `generation` goes up with every change, so a process holding the tenant's
    index in memory (another replica, one started before `loraflow docs add`) knows when to catch up."""

    __tablename__ = "retrieval_collections"

    # No foreign keys to the registry's tenants: that table belongs to another part's metadata.
    tenant_id: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocumentRow(Base):
    __tablename__ = "retrieval_documents"
    __table_args__ = (Index("ix_retrieval_documents_tenant_name", "tenant_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # doc_<time><random>: sorts by creation
    tenant_id: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS))
    name: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))  # text | markdown | jsonl
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    embedding_model: Mapped[str] = mapped_column(String(500))  # the settings' name, not a machine's path
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChunkRow(Base):
    """A chunk; its `id` is also its id in the tenant's FAISS index."""

    __tablename__ = "retrieval_chunks"
    __table_args__ = (
        Index("ix_retrieval_chunks_tenant_id_id", "tenant_id", "id"),
        # Ids must never be reused (SQLite would reuse the highest deleted id without AUTOINCREMENT): a stale
        # index file could otherwise answer with a new chunk under an old chunk's id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS))
    document_id: Mapped[str] = mapped_column(ForeignKey("retrieval_documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # index of the chunk within its document
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    line: Mapped[int | None] = mapped_column(Integer)  # JSONL: the line; offsets are then into that line's text
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised, little-endian
