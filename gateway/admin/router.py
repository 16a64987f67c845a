"""Routes of the admin API. Database-only routes are plain functions (FastAPI runs them in its thread pool);
routes that touch the engines are async and go through the adapter lifecycle."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from gateway import registry, settings_owners, tenants
from gateway.admin.protocol import (
    AdapterCreate,
    AdapterOut,
    AdapterUpdate,
    KeyCreate,
    KeyCreated,
    KeyOut,
    Promote,
    PromotionOut,
    RegisterFromPath,
    Rollback,
    TenantCreate,
    TenantOut,
    TenantUpdate,
    VersionOut,
)
from gateway.deps import AdminDep
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.request_body import read_json
from gateway.state import Gateway
from gateway.store.models import AdapterVersion

router = APIRouter(prefix="/admin")


@router.post("/tenants", status_code=201)
def create_tenant(body: TenantCreate, gw: AdminDep) -> TenantOut:
    with gw.sessions() as session:
        return TenantOut.of(tenants.create_tenant(session, body.id, body.name, _checked(body.settings)))


@router.get("/tenants")
def list_tenants(gw: AdminDep) -> list[TenantOut]:
    with gw.sessions() as session:
        return [TenantOut.of(row) for row in tenants.list_tenants(session)]


@router.get("/tenants/{tenant_id}")
def get_tenant(tenant_id: str, gw: AdminDep) -> TenantOut:
    with gw.sessions() as session:
        return TenantOut.of(tenants.get_tenant(session, tenant_id))


@router.patch("/tenants/{tenant_id}")
def update_tenant(tenant_id: str, body: TenantUpdate, gw: AdminDep) -> TenantOut:
    with gw.sessions() as session:
        row = tenants.update_tenant_settings(session, tenant_id, _checked(body.settings))
        if body.name:
            row.name = body.name
            session.commit()
        return TenantOut.of(row)


@router.post("/tenants/{tenant_id}/keys", status_code=201)
def create_key(tenant_id: str, body: KeyCreate, gw: AdminDep) -> KeyCreated:
    with gw.sessions() as session:
        row, secret = tenants.create_key(
            session,
            tenant_id,
            body.name,
            body.default_adapter,
            body.model_map,
            record=body.record,
            tenant_admin=body.tenant_admin,
        )
        return KeyCreated(**KeyOut.of(row).model_dump(), key=secret)


@router.get("/tenants/{tenant_id}/keys")
def list_keys(tenant_id: str, gw: AdminDep) -> list[KeyOut]:
    with gw.sessions() as session:
        return [KeyOut.of(row) for row in tenants.list_keys(session, tenant_id)]


@router.delete("/tenants/{tenant_id}/keys/{key_id}")
def revoke_key(tenant_id: str, key_id: str, gw: AdminDep) -> KeyOut:
    with gw.sessions() as session:
        row = tenants.revoke_key(session, tenant_id, key_id)
    gw.keys.forget(key_id)
    return KeyOut.of(row)


@router.get("/tenants/{tenant_id}/adapters")
def list_adapters(tenant_id: str, gw: AdminDep) -> list[AdapterOut]:
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
        return [_adapter_out(session, adapter) for adapter in registry.list_adapters(session, tenant_id)]


@router.post("/tenants/{tenant_id}/adapters", status_code=201)
async def create_adapter(tenant_id: str, body: AdapterCreate, gw: AdminDep) -> AdapterOut:
    """Create an alias before any version: apps can call it at once (the base model serves it until a promotion)."""
    out = await run_in_threadpool(_create_adapter, gw, tenant_id, body)
    await gw.catalog.refresh()
    return out


@router.get("/tenants/{tenant_id}/adapters/{alias}")
def get_adapter(tenant_id: str, alias: str, gw: AdminDep) -> AdapterOut:
    with gw.sessions() as session:
        return _adapter_out(session, registry.get_adapter(session, tenant_id, alias))


@router.patch("/tenants/{tenant_id}/adapters/{alias}")
async def update_adapter(tenant_id: str, alias: str, body: AdapterUpdate, gw: AdminDep) -> AdapterOut:
    out = await run_in_threadpool(_update_options, gw, tenant_id, alias, body)
    await gw.catalog.refresh()
    return out


@router.post("/tenants/{tenant_id}/adapters/{alias}/versions", status_code=201)
async def register_version(tenant_id: str, alias: str, request: Request, gw: AdminDep) -> VersionOut:
    """Register a new version from a PEFT directory (JSON `{"path": ...}`) or an uploaded `.tar.gz` (multipart
    field `file`, optional field `lineage` holding JSON). Checked before it is accepted; a refusal changes nothing."""
    await run_in_threadpool(_tenant_exists, gw, tenant_id)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > gw.settings.max_adapter_bytes:
            raise PayloadTooLarge(f"The upload is larger than {gw.settings.max_adapter_bytes} bytes.")
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("Upload the adapter as a .tar.gz in the multipart field `file`.", param="file")
        lineage = _json_field(str(form.get("lineage") or "{}"), "lineage")
        version = await gw.adapters.register_archive(tenant_id, alias, upload.file, lineage)
    else:
        body, _ = await read_json(request, RegisterFromPath, 1 << 20)
        version = await gw.adapters.register_dir(tenant_id, alias, Path(body.path), body.lineage)
    return VersionOut.of(version, alias)


@router.get("/tenants/{tenant_id}/adapters/{alias}/versions")
def list_versions(tenant_id: str, alias: str, gw: AdminDep) -> list[VersionOut]:
    with gw.sessions() as session:
        adapter = registry.get_adapter(session, tenant_id, alias)
        return [VersionOut.of(v, alias) for v in registry.list_versions(session, adapter)]


@router.get("/tenants/{tenant_id}/adapters/{alias}/versions/{number}")
def get_version(tenant_id: str, alias: str, number: int, gw: AdminDep) -> VersionOut:
    with gw.sessions() as session:
        return VersionOut.of(registry.get_version(session, tenant_id, alias, number), alias)


@router.get("/tenants/{tenant_id}/adapters/{alias}/versions/{number}/archive")
async def download_version(tenant_id: str, alias: str, number: int, gw: AdminDep) -> FileResponse:
    """The version's PEFT files as a .tar.gz (for a trainer that continues from it on another machine)."""
    path = await gw.adapters.archive(tenant_id, alias, number)
    return FileResponse(
        path,
        media_type="application/gzip",
        filename=f"{tenant_id}-{alias}-{number}.tar.gz",
        background=BackgroundTask(path.unlink),
    )


@router.post("/tenants/{tenant_id}/adapters/{alias}/versions/{number}/stage")
async def stage_version(tenant_id: str, alias: str, number: int, gw: AdminDep) -> VersionOut:
    """Load a version in the engines so it can be evaluated under its pinned name before a promotion."""
    return VersionOut.of(await gw.adapters.stage(tenant_id, alias, number), alias)


@router.post("/tenants/{tenant_id}/adapters/{alias}/versions/{number}/retire")
async def retire_version(tenant_id: str, alias: str, number: int, gw: AdminDep) -> VersionOut:
    return VersionOut.of(await gw.adapters.retire(tenant_id, alias, number), alias)


@router.post("/tenants/{tenant_id}/adapters/{alias}/promote")
async def promote(tenant_id: str, alias: str, body: Promote, gw: AdminDep) -> VersionOut:
    return VersionOut.of(await gw.adapters.promote(tenant_id, alias, body.version, body.reason), alias)


@router.post("/tenants/{tenant_id}/adapters/{alias}/rollback")
async def rollback(tenant_id: str, alias: str, body: Rollback, gw: AdminDep) -> VersionOut:
    return VersionOut.of(await gw.adapters.rollback(tenant_id, alias, body.reason), alias)


@router.get("/tenants/{tenant_id}/adapters/{alias}/promotions")
def list_promotions(tenant_id: str, alias: str, gw: AdminDep) -> list[PromotionOut]:
    with gw.sessions() as session:
        adapter = registry.get_adapter(session, tenant_id, alias)
        numbers = {v.id: v.number for v in registry.list_versions(session, adapter)}
        return [PromotionOut.of(p, numbers, alias) for p in registry.list_promotions(session, adapter)]


def _adapter_out(session: Session, adapter: registry.Adapter) -> AdapterOut:
    versions: list[AdapterVersion] = registry.list_versions(session, adapter)
    production = next((v for v in versions if v.id == adapter.production_version_id), None)
    return AdapterOut(
        alias=adapter.alias,
        production=f"{adapter.alias}@{production.number}" if production else None,
        options=adapter.options,
        versions=[VersionOut.of(v, adapter.alias) for v in versions],
    )


def _create_adapter(gw: Gateway, tenant_id: str, body: AdapterCreate) -> AdapterOut:
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
        return _adapter_out(session, registry.create_adapter(session, tenant_id, body.alias, body.options))


def _update_options(gw: Gateway, tenant_id: str, alias: str, body: AdapterUpdate) -> AdapterOut:
    with gw.sessions() as session:
        adapter = registry.update_options(session, tenant_id, alias, body.options)
        return _adapter_out(session, adapter)


def _checked(settings: dict) -> dict:
    """Tenant settings are free-form JSON owned by several parts: the ones the gateway acts on are checked here,
    the others by the part that owns them (the trainer's, when it is installed): gateway/settings_owners.py."""
    settings_owners.check(settings)
    return settings


def _tenant_exists(gw: Gateway, tenant_id: str) -> None:
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)


def _json_field(text: str, name: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise BadRequest(f"`{name}` must be a JSON object.", param=name) from None
    if not isinstance(value, dict):
        raise BadRequest(f"`{name}` must be a JSON object.", param=name)
    return value
