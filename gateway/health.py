"""Liveness, readiness and metrics routes (for probes and Prometheus; no key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.deps import GatewayDep

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive and serving HTTP; says nothing of the engine (that is /ready)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(gw: GatewayDep) -> JSONResponse:
    """Ready when at least one engine is up and holds every production and staged adapter."""
    engines = [
        {
            "url": e.url,
            "up": e.up,
            "ready": e.ready,
            "adapters_loaded": len(e.loaded),
            "adapters_missing": len(e.missing),
        }
        for e in gw.pool.engines
    ]
    is_ready = gw.pool.ready and gw.catalog.current.revision >= 0
    body = {"status": "ready" if is_ready else "not_ready", "engines": engines}
    # loaded with every tenant's index before the gateway serves, so "ready" whenever it is on
    body["retrieval"] = "ready" if gw.retrieval is not None else "off"
    headers = None if is_ready else {"Retry-After": str(gw.settings.engine.retry_after_s)}
    return JSONResponse(body, status_code=200 if is_ready else 503, headers=headers)


@router.get("/metrics")
async def metrics(gw: GatewayDep) -> Response:
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)
