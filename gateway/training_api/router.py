"""Routes of the training API (admin key): runs, a person's verdict on a held run, and golden sets."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from gateway import registry, tenants
from gateway.deps import AdminDep
from gateway.request_body import read_body
from gateway.state import Gateway
from gateway.training_api import golden, runs
from gateway.training_api.protocol import RunOut, RunReview, RunStart, RunSummary, RunUpdate
from gateway.training_api.review import review

router = APIRouter(prefix="/admin")
MAX_GOLDEN_BYTES = 16 * 1024 * 1024


@router.post("/tenants/{tenant_id}/training-runs", status_code=201)
def start_run(tenant_id: str, body: RunStart, gw: AdminDep) -> RunOut:
    """Start a run: 409 `run_in_progress` while another run of this tenant holds the lock."""
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
        run = runs.start_run(session, tenant_id, body.adapter, body.trigger, body.runner, gw.settings.training.lease_s)
        return RunOut.of(run)


@router.patch("/tenants/{tenant_id}/training-runs/{run_id}")
def update_run(tenant_id: str, run_id: str, body: RunUpdate, gw: AdminDep) -> RunSummary:
    changes = body.model_dump(exclude_unset=True)
    with gw.sessions() as session:
        return RunSummary.of(runs.update_run(session, tenant_id, run_id, changes, gw.settings.training.lease_s))


@router.get("/tenants/{tenant_id}/training-runs")
def list_runs(
    tenant_id: str, gw: AdminDep, adapter: str | None = None, status: str | None = None, limit: int = 50
) -> list[RunSummary]:
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
        found = runs.list_runs(session, gw.settings.training.lease_s, tenant_id, adapter, status, min(limit, 500))
        return [RunSummary.of(run) for run in found]


@router.get("/training-runs")
def list_all_runs(gw: AdminDep, status: str | None = None, limit: int = 50) -> list[RunSummary]:
    with gw.sessions() as session:
        found = runs.list_runs(session, gw.settings.training.lease_s, status=status, limit=min(limit, 500))
        return [RunSummary.of(run) for run in found]


@router.get("/tenants/{tenant_id}/training-runs/{run_id}")
def get_run(tenant_id: str, run_id: str, gw: AdminDep) -> RunOut:
    with gw.sessions() as session:
        runs.expire_lost(session, gw.settings.training.lease_s, tenant_id)
        return RunOut.of(runs.get_run(session, tenant_id, run_id))


@router.post("/tenants/{tenant_id}/training-runs/{run_id}/approve")
async def approve_run(tenant_id: str, run_id: str, body: RunReview, gw: AdminDep) -> RunSummary:
    """Promote the candidate of a run held for review (409 unless it is held, or when production changed since)."""
    return RunSummary.of(await review(gw, tenant_id, run_id, "approve", body.reason))


@router.post("/tenants/{tenant_id}/training-runs/{run_id}/reject")
async def reject_run(tenant_id: str, run_id: str, body: RunReview, gw: AdminDep) -> RunSummary:
    """Retire the candidate of a run held for review; production stays as it is."""
    return RunSummary.of(await review(gw, tenant_id, run_id, "reject", body.reason))


@router.get("/tenants/{tenant_id}/training-runs/{run_id}/report.md", response_class=PlainTextResponse)
def get_report(tenant_id: str, run_id: str, gw: AdminDep) -> PlainTextResponse:
    with gw.sessions() as session:
        run = runs.get_run(session, tenant_id, run_id)
        return PlainTextResponse(run.report_markdown, media_type="text/markdown")


@router.put("/tenants/{tenant_id}/adapters/{alias}/golden")
async def put_golden(tenant_id: str, alias: str, request: Request, gw: AdminDep) -> dict[str, int]:
    """Replace the alias's golden set with a JSONL body (`input`, `expected`, `scorer` per line)."""
    items = golden.parse_jsonl(await read_body(request, MAX_GOLDEN_BYTES))
    return {"items": await run_in_threadpool(_store_golden, gw, tenant_id, alias, items)}


@router.get("/tenants/{tenant_id}/adapters/{alias}/golden")
def get_golden(tenant_id: str, alias: str, gw: AdminDep) -> Response:
    with gw.sessions() as session:
        items = golden.get_golden(session, tenant_id, alias)
    return Response("".join(json.dumps(item) + "\n" for item in items), media_type="application/x-ndjson")


def _store_golden(gw: Gateway, tenant_id: str, alias: str, items: list[dict[str, Any]]) -> int:
    with gw.sessions() as session:
        registry.get_adapter(session, tenant_id, alias)
        return golden.put_golden(session, tenant_id, alias, items)
