"""The documents page: a tenant's documents and the state of its index, through the retrieval service the
documents admin API uses (the same wire types, so no path on disk reaches the page)."""

from __future__ import annotations

from typing import Any

from gateway.documents_api.protocol import Document, Index
from gateway.documents_api.uploads import upload_limit
from gateway.state import Gateway

PAGE = 200


def documents_page(gw: Gateway, tenant_id: str) -> dict[str, Any]:
    if gw.retrieval is None:
        return {"enabled": False, "documents": [], "index": None, "more": False}
    service = gw.retrieval
    found = service.list_documents(tenant_id, limit=PAGE + 1)
    return {
        "enabled": True,
        "documents": [Document.of(info) for info in found[:PAGE]],
        "more": len(found) > PAGE,
        "index": Index.of(service.index_info(tenant_id)),
        "max_bytes": service.settings.max_document_bytes,
        "max_files": service.settings.max_documents_per_upload,
        "upload_limit": upload_limit(service.settings),
    }
