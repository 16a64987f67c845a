"""Route of the embeddings API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.deps import CallerDep, GatewayDep
from gateway.embeddings.protocol import EmbeddingRequest
from gateway.embeddings.serving import embed
from gateway.request_body import read_json

router = APIRouter(prefix="/v1")


@router.post("/embeddings")
async def embeddings(request: Request, caller: CallerDep, gw: GatewayDep) -> Response:
    body, _ = await read_json(request, EmbeddingRequest, gw.settings.max_request_bytes)
    result = await embed(gw.retrieval, caller, body)
    return Response(result.model_dump_json().encode(), media_type="application/json")
