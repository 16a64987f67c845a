"""Routes of the documents admin API, under /admin/tenants/{t}/. Every route answers 400 `retrieval_disabled` on
a gateway without retrieval, and 404 for an unknown tenant or another tenant's document. Blocking work (the
database, embedding, FAISS) runs in FastAPI's thread pool: plain `def` routes, or `run_in_threadpool`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from gateway import tenants
from gateway.deps import AdminDep
from gateway.documents_api.protocol import Document, DocumentDeleted, DocumentList, Index
from gateway.documents_api.uploads import read_uploads
from gateway.retrieval_service import require
from gateway.state import Gateway

router = APIRouter(prefix="/admin/tenants/{tenant_id}")

MAX_PAGE = 1000


@router.post("/documents", status_code=201)
async def add_documents(tenant_id: str, request: Request, gw: AdminDep) -> DocumentList:
    """Upload documents (multipart: `file` one or more times, optional `replace`, optional `metadata` JSON): every
    one is checked, chunked, embedded and stored, or none is. `replace=true` deletes other documents of the same
    name in the same transaction (a new version of a file)."""
    service = require(gw)
    await run_in_threadpool(_tenant_exists, gw, tenant_id)
    uploads, replace = await read_uploads(request, service.settings)
    stored = await run_in_threadpool(service.add_documents, tenant_id, uploads, replace=replace)
    return DocumentList(data=[Document.of(info) for info in stored], last_id=stored[-1].id if stored else None)


@router.get("/documents")
def list_documents(
    tenant_id: str,
    gw: AdminDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[str | None, Query(description="The `last_id` of the previous page.")] = None,
) -> DocumentList:
    """The tenant's documents, oldest first."""
    service = require(gw)
    _tenant_exists(gw, tenant_id)
    page = service.list_documents(tenant_id, limit=limit + 1, after=after)
    data = [Document.of(info) for info in page[:limit]]
    return DocumentList(data=data, has_more=len(page) > limit, last_id=data[-1].id if data else None)


@router.post("/documents/rebuild", status_code=202)
def rebuild_index(tenant_id: str, gw: AdminDep) -> Index:
    """Rebuild the tenant's index in the background and swap it in whole; queries go on meanwhile. Returns at once."""
    service = require(gw)
    _tenant_exists(gw, tenant_id)
    service.rebuild(tenant_id)
    return Index.of(service.index_info(tenant_id))


@router.get("/documents/{document_id}")
def get_document(
    tenant_id: str,
    document_id: str,
    gw: AdminDep,
    chunks: Annotated[bool, Query(description="Also return the document's chunks, in order.")] = False,
) -> Document:
    service = require(gw)
    _tenant_exists(gw, tenant_id)
    info = service.get_document(tenant_id, document_id)
    return Document.of(info, service.document_chunks(tenant_id, document_id) if chunks else None)


@router.delete("/documents/{document_id}")
def delete_document(tenant_id: str, document_id: str, gw: AdminDep) -> DocumentDeleted:
    """Delete a document and its chunks; no query returns them from now on."""
    service = require(gw)
    _tenant_exists(gw, tenant_id)
    info = service.delete_document(tenant_id, document_id)
    return DocumentDeleted(id=info.id, name=info.name, chunk_count=info.chunk_count)


@router.get("/index")
def get_index(tenant_id: str, gw: AdminDep) -> Index:
    """The tenant's index: its kind (flat or HNSW), size, and whether a rebuild is under way."""
    service = require(gw)
    _tenant_exists(gw, tenant_id)
    return Index.of(service.index_info(tenant_id))


def _tenant_exists(gw: Gateway, tenant_id: str) -> None:
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
