"""Documents and chunks in the SQL database (SQLite or PostgreSQL): the truth that every index is rebuilt from.

Every function is scoped by tenant in its WHERE clause; nothing here reads a row of another tenant.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from retrieval.errors import DocumentNotFound
from retrieval.models import ChunkRow, CollectionRow, DocumentRow, utcnow
from retrieval.uploads import ParsedDocument, embedding_text

PAGE = 5000  # rows read per query when loading vectors: bounded memory per round trip

# What a hit needs, in ChunkInfo's field order: never the embedding blob.
_CHUNK_COLUMNS = select(
    ChunkRow.id,
    ChunkRow.tenant_id,
    ChunkRow.document_id,
    DocumentRow.name,
    ChunkRow.position,
    ChunkRow.start_char,
    ChunkRow.end_char,
    ChunkRow.line,
    ChunkRow.text,
    ChunkRow.meta,
).join(DocumentRow, DocumentRow.id == ChunkRow.document_id)


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    tenant_id: str
    name: str
    kind: str
    size_bytes: int
    sha256: str
    chunk_count: int
    metadata: dict[str, Any]
    embedding_model: str
    created_at: datetime
    existing: bool = False  # from add: the same name and content were already stored, nothing new was added

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape for the admin API."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "chunk_count": self.chunk_count,
            "metadata": self.metadata,
            "embedding_model": self.embedding_model,
            "created_at": self.created_at.isoformat(),
            "existing": self.existing,
        }


@dataclass(frozen=True)
class ChunkInfo:
    """A chunk as read back for a hit (no embedding)."""

    id: int
    tenant_id: str
    document_id: str
    document_name: str
    position: int
    start: int
    end: int
    line: int | None
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Added:
    documents: list[DocumentInfo]
    chunk_ids: np.ndarray  # int64, in the order of the vectors handed in (existing documents contribute none)
    vectors: np.ndarray  # float32, the rows of `chunk_ids`
    removed_chunk_ids: list[int]  # chunks of documents replaced by name
    generation: int | None  # the tenant's change counter after this commit; None: nothing changed


_last_micros = 0
_id_lock = threading.Lock()


def new_document_id() -> str:
    """`doc_` + microseconds (strictly increasing in this process) + random: ids sort by creation, so listings page
    by id, and two processes never collide."""
    global _last_micros
    with _id_lock:
        _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
        micros = _last_micros
    return f"doc_{micros:014x}{os.urandom(5).hex()}"


class DocumentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    # Writes: one transaction each, generation bumped in the same transaction.

    def add(
        self,
        tenant_id: str,
        documents: Sequence[ParsedDocument],
        vectors: Sequence[np.ndarray],
        model: str,
        *,
        replace: bool = False,
    ) -> Added:
        """Store every document with its chunks and their vectors, or (on any error) none of them.

        A document whose name and content are already stored is not stored again (`existing=True`). With `replace`,
        other documents of the same name are deleted in the same transaction.
        """
        infos: list[DocumentInfo] = []
        new_ids: list[np.ndarray] = []
        new_vectors: list[np.ndarray] = []
        removed: list[int] = []
        with self.sessions.begin() as session:
            for document, matrix in zip(documents, vectors, strict=True):
                same = session.scalars(
                    select(DocumentRow).where(DocumentRow.tenant_id == tenant_id, DocumentRow.name == document.name)
                ).all()
                duplicate = next((row for row in same if row.sha256 == document.sha256), None)
                if replace:
                    for row in same:
                        if row is not duplicate:
                            removed += self._delete_document(session, tenant_id, row.id)
                if duplicate is not None:
                    infos.append(_info(duplicate, existing=True))
                    continue
                row = DocumentRow(
                    id=new_document_id(),
                    tenant_id=tenant_id,
                    name=document.name,
                    kind=document.kind,
                    sha256=document.sha256,
                    size_bytes=document.size_bytes,
                    chunk_count=len(document.pieces),
                    meta=document.metadata,
                    embedding_model=model,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                rows = [
                    {
                        "tenant_id": tenant_id,
                        "document_id": row.id,
                        "position": piece.index,
                        "start_char": piece.start,
                        "end_char": piece.end,
                        "line": piece.line,
                        "text": piece.text,
                        "meta": piece.metadata,
                        "embedding": _blob(vector),
                    }
                    for piece, vector in zip(document.pieces, matrix, strict=True)
                ]
                ids = session.scalars(insert(ChunkRow).returning(ChunkRow.id, sort_by_parameter_order=True), rows).all()
                new_ids.append(np.asarray(ids, dtype=np.int64))
                new_vectors.append(np.asarray(matrix, dtype=np.float32))
                infos.append(_info(row))
            generation = self._bump(session, tenant_id) if new_ids or removed else None
        dim = vectors[0].shape[1] if len(vectors) else 0
        return Added(
            documents=infos,
            chunk_ids=np.concatenate(new_ids) if new_ids else np.empty(0, np.int64),
            vectors=np.concatenate(new_vectors) if new_vectors else np.empty((0, dim), np.float32),
            removed_chunk_ids=removed,
            generation=generation,
        )

    def delete(self, tenant_id: str, document_id: str) -> tuple[DocumentInfo, list[int], int]:
        """Delete one document of this tenant; returns it, the ids of its chunks and the new generation."""
        with self.sessions.begin() as session:
            row = session.get(DocumentRow, document_id)
            if row is None or row.tenant_id != tenant_id:
                raise DocumentNotFound(f"No document {document_id!r}.", param="document_id")
            info = _info(row)
            chunk_ids = self._delete_document(session, tenant_id, document_id)
            generation = self._bump(session, tenant_id)
        return info, chunk_ids, generation

    def delete_tenant(self, tenant_id: str) -> int:
        """Delete every document of the tenant; returns how many there were."""
        with self.sessions.begin() as session:
            count = session.scalar(
                select(func.count()).select_from(DocumentRow).where(DocumentRow.tenant_id == tenant_id)
            )
            session.execute(delete(ChunkRow).where(ChunkRow.tenant_id == tenant_id))
            session.execute(delete(DocumentRow).where(DocumentRow.tenant_id == tenant_id))
            session.execute(delete(CollectionRow).where(CollectionRow.tenant_id == tenant_id))
        return int(count or 0)

    def set_embeddings(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of these chunks (re-embedding after a change of model; see `set_model`)."""
        with self.sessions.begin() as session:
            session.execute(
                update(ChunkRow), [{"id": int(i), "embedding": _blob(v)} for i, v in zip(ids, vectors, strict=True)]
            )

    def set_model(self, tenant_id: str, model: str) -> int:
        """Record that every document of the tenant is now embedded with `model`; returns the new generation."""
        with self.sessions.begin() as session:
            session.execute(update(DocumentRow).where(DocumentRow.tenant_id == tenant_id).values(embedding_model=model))
            return self._bump(session, tenant_id)

    @staticmethod
    def _delete_document(session: Session, tenant_id: str, document_id: str) -> list[int]:
        ids = session.scalars(
            select(ChunkRow.id).where(ChunkRow.tenant_id == tenant_id, ChunkRow.document_id == document_id)
        ).all()
        session.execute(delete(ChunkRow).where(ChunkRow.tenant_id == tenant_id, ChunkRow.document_id == document_id))
        session.execute(delete(DocumentRow).where(DocumentRow.tenant_id == tenant_id, DocumentRow.id == document_id))
        return list(ids)

    def _bump(self, session: Session, tenant_id: str) -> int:
        # An upsert, so two processes adding a tenant's first documents at once do not collide.
        dialect = self.engine.dialect.name
        make = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = make(CollectionRow).values(tenant_id=tenant_id, generation=1, updated_at=utcnow())
        statement = statement.on_conflict_do_update(
            index_elements=[CollectionRow.tenant_id],
            set_={"generation": CollectionRow.generation + 1, "updated_at": utcnow()},
        )
        return int(session.execute(statement.returning(CollectionRow.generation)).scalar_one())

    # Reads

    def get(self, tenant_id: str, document_id: str) -> DocumentInfo:
        with self.sessions() as session:
            row = session.get(DocumentRow, document_id)
            if row is None or row.tenant_id != tenant_id:
                raise DocumentNotFound(f"No document {document_id!r}.", param="document_id")
            return _info(row)

    def documents(self, tenant_id: str, *, limit: int = 100, after: str | None = None) -> list[DocumentInfo]:
        """The tenant's documents, oldest first; page with `after` = the last id of the previous page."""
        query = select(DocumentRow).where(DocumentRow.tenant_id == tenant_id)
        if after:
            query = query.where(DocumentRow.id > after)
        with self.sessions() as session:
            return [_info(row) for row in session.scalars(query.order_by(DocumentRow.id).limit(limit))]

    def chunks(self, tenant_id: str, document_id: str) -> list[ChunkInfo]:
        """A document's chunks in order (for an admin view of how it was cut)."""
        self.get(tenant_id, document_id)
        query = _CHUNK_COLUMNS.where(ChunkRow.tenant_id == tenant_id, ChunkRow.document_id == document_id).order_by(
            ChunkRow.position
        )
        with self.sessions() as session:
            return [ChunkInfo(*row) for row in session.execute(query)]

    def hits(self, tenant_id: str, ids: Sequence[int]) -> dict[int, ChunkInfo]:
        """The chunks with these ids that exist and belong to this tenant; others are simply absent."""
        if not ids:
            return {}
        query = _CHUNK_COLUMNS.where(ChunkRow.tenant_id == tenant_id, ChunkRow.id.in_([int(i) for i in ids]))
        with self.sessions() as session:
            return {row[0]: ChunkInfo(*row) for row in session.execute(query)}

    def generation(self, tenant_id: str) -> int:
        with self.sessions() as session:
            value = session.scalar(select(CollectionRow.generation).where(CollectionRow.tenant_id == tenant_id))
            return int(value or 0)

    def tenants(self) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(CollectionRow.tenant_id).order_by(CollectionRow.tenant_id)))

    def chunk_ids(self, tenant_id: str) -> np.ndarray:
        with self.sessions() as session:
            ids = session.scalars(select(ChunkRow.id).where(ChunkRow.tenant_id == tenant_id)).all()
        return np.asarray(ids, dtype=np.int64)

    def count(self, tenant_id: str) -> int:
        with self.sessions() as session:
            query = select(func.count()).select_from(ChunkRow).where(ChunkRow.tenant_id == tenant_id)
            return int(session.scalar(query) or 0)

    def vectors(self, tenant_id: str, ids: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 matrix) pages of the tenant's stored vectors: all of them, or those of `ids`."""
        if ids is not None:
            for begin in range(0, len(ids), PAGE):
                page = [int(i) for i in ids[begin : begin + PAGE]]
                query = select(ChunkRow.id, ChunkRow.embedding).where(
                    ChunkRow.tenant_id == tenant_id, ChunkRow.id.in_(page)
                )
                with self.sessions() as session:
                    yield _matrix(session.execute(query).all())
            return
        last = 0
        while True:
            # Keyset pagination: each page is one short query, so a long rebuild holds no transaction open.
            query = (
                select(ChunkRow.id, ChunkRow.embedding)
                .where(ChunkRow.tenant_id == tenant_id, ChunkRow.id > last)
                .order_by(ChunkRow.id)
                .limit(PAGE)
            )
            with self.sessions() as session:
                rows = session.execute(query).all()
            if not rows:
                return
            yield _matrix(rows)
            last = rows[-1][0]

    def models(self, tenant_id: str) -> set[str]:
        """The embedding models the tenant's documents were embedded with."""
        with self.sessions() as session:
            query = select(DocumentRow.embedding_model).where(DocumentRow.tenant_id == tenant_id).distinct()
            return set(session.scalars(query))

    def texts_not_embedded_with(self, tenant_id: str, model: str) -> Iterator[tuple[np.ndarray, list[str]]]:
        """(ids, texts) pages of the chunks whose document was embedded with another model."""
        last = 0
        while True:
            query = (
                select(ChunkRow.id, ChunkRow.text, ChunkRow.meta)
                .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
                .where(ChunkRow.tenant_id == tenant_id, DocumentRow.embedding_model != model, ChunkRow.id > last)
                .order_by(ChunkRow.id)
                .limit(PAGE)
            )
            with self.sessions() as session:
                rows = session.execute(query).all()
            if not rows:
                return
            yield np.asarray([r[0] for r in rows], np.int64), [embedding_text(r[1], r[2]) for r in rows]
            last = rows[-1][0]


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _matrix(rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.vstack([np.frombuffer(r[1], dtype="<f4") for r in rows]).astype(np.float32, copy=False)
    return ids, matrix


def _info(row: DocumentRow, *, existing: bool = False) -> DocumentInfo:
    return DocumentInfo(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        kind=row.kind,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        chunk_count=row.chunk_count,
        metadata=row.meta,
        embedding_model=row.embedding_model,
        # SQLite hands back naive datetimes; they were written in UTC.
        created_at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
        existing=existing,
    )
