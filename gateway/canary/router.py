"""Routes of the canary API (admin key): start a canary of a version, see it (with its evidence now), its history,
and end it early by a person's decision. The decision loop (gateway/canary/loop.py) ends it otherwise."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from gateway import registry, tenants
from gateway.canary import store
from gateway.canary.loop import Look, look, stopping_conflict
from gateway.canary.protocol import CanaryOut, CanaryStart, CanaryStop
from gateway.deps import AdminDep
from gateway.errors import Conflict, NotFound
from gateway.state import Gateway
from gateway.store.models import Canary, TrainingRun

router = APIRouter(prefix="/admin")


@router.post("/tenants/{tenant_id}/adapters/{alias}/canary", status_code=201)
async def start_canary(tenant_id: str, alias: str, body: CanaryStart, gw: AdminDep) -> CanaryOut:
    """Load the version in the engines, then split the alias's users between it and production."""
    await run_in_threadpool(_check_start, gw, tenant_id, alias, body)
    await gw.adapters.stage(tenant_id, alias, body.version)
    out = await run_in_threadpool(_start, gw, tenant_id, alias, body)
    await gw.catalog.refresh()
    return out


@router.get("/tenants/{tenant_id}/adapters/{alias}/canary")
def get_canary(tenant_id: str, alias: str, gw: AdminDep) -> CanaryOut:
    """The alias's running canary, else its last one; while it runs, its evidence as of now."""
    with gw.sessions() as session:
        canary = store.current(session, registry.get_adapter(session, tenant_id, alias))
        return CanaryOut.of(canary, look(session, canary))


@router.get("/tenants/{tenant_id}/adapters/{alias}/canaries")
def list_canaries(tenant_id: str, alias: str, gw: AdminDep) -> list[CanaryOut]:
    with gw.sessions() as session:
        found = store.of_alias(session, registry.get_adapter(session, tenant_id, alias))
        return [CanaryOut.of(canary, look(session, canary)) for canary in found]


@router.post("/tenants/{tenant_id}/adapters/{alias}/canary/stop")
async def stop_canary(tenant_id: str, alias: str, body: CanaryStop, gw: AdminDep) -> CanaryOut:
    """End the running canary now: promote the candidate, or send it back."""
    current = await run_in_threadpool(_running, gw, tenant_id, alias)
    if not await gw.canaries.stop(current, body.decision, body.reason):
        raise stopping_conflict(current)
    return await run_in_threadpool(_out, gw, current.canary_id)


def _check_start(gw: Gateway, tenant_id: str, alias: str, body: CanaryStart) -> None:
    """Every refusal before anything is loaded: a bad request changes nothing."""
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
        adapter = registry.get_adapter(session, tenant_id, alias)
        version = registry.get_version(session, tenant_id, alias, body.version)
        if adapter.production_version_id == version.id:
            raise Conflict(f"{alias}@{body.version} is already in production.", param="version")
        if version.state not in ("registered", "staged"):
            raise Conflict(f"{alias}@{body.version} is {version.state}; only a new version can go to canary.")
        if any(canary.status in store.ACTIVE for canary in store.of_alias(session, adapter)):
            raise Conflict(f"`{alias}` already has a canary running.", code="canary_running")
        if body.run_id is not None:
            run = session.get(TrainingRun, body.run_id)
            if run is None or run.tenant_id != tenant_id:
                raise NotFound(f"No training run `{body.run_id}` for tenant `{tenant_id}`.", param="run_id")


def _start(gw: Gateway, tenant_id: str, alias: str, body: CanaryStart) -> CanaryOut:
    with gw.sessions() as session:
        adapter = registry.get_adapter(session, tenant_id, alias)
        version = registry.get_version(session, tenant_id, alias, body.version)
        canary = store.start(session, adapter, version, body.policy(), body.run_id)
        return CanaryOut.of(canary, look(session, canary))


def _running(gw: Gateway, tenant_id: str, alias: str) -> Look:
    with gw.sessions() as session:
        canary = store.current(session, registry.get_adapter(session, tenant_id, alias))
        if canary.status not in store.ACTIVE:
            raise Conflict(f"`{alias}` has no canary running (the last one {canary.status}).", code="no_canary")
        return look(session, canary)


def _out(gw: Gateway, canary_id: str) -> CanaryOut:
    with gw.sessions() as session:
        canary = session.get(Canary, canary_id)
        assert canary is not None
        return CanaryOut.of(canary, look(session, canary))
