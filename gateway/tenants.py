"""Tenants and their API keys, in the store."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import keys
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.store.models import ApiKey, Tenant, utcnow

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def create_tenant(session: Session, tenant_id: str, name: str = "", settings: dict[str, Any] | None = None) -> Tenant:
    if not TENANT_ID.match(tenant_id):
        raise BadRequest(
            "A tenant id is 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit.", param="id"
        )
    tenant = Tenant(id=tenant_id, name=name or tenant_id, settings=settings or {})
    session.add(tenant)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"Tenant `{tenant_id}` already exists.", param="id") from None
    return tenant


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"No tenant `{tenant_id}`.", param="tenant")
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id)))


def update_tenant_settings(session: Session, tenant_id: str, changes: dict[str, Any]) -> Tenant:
    tenant = get_tenant(session, tenant_id)
    tenant.settings = {**tenant.settings, **changes}
    session.commit()
    return tenant


def create_key(
    session: Session,
    tenant_id: str,
    name: str = "",
    default_adapter: str | None = None,
    model_map: dict[str, str] | None = None,
    *,
    record: bool = True,
    tenant_admin: bool = False,
) -> tuple[ApiKey, str]:
    """A new key for the tenant. Returns the row and the key itself, which is never available again."""
    get_tenant(session, tenant_id)
    secret = keys.new_key()
    row = ApiKey(
        id=keys.new_key_id(),
        tenant_id=tenant_id,
        name=name,
        prefix=keys.display_prefix(secret),
        hash=keys.hash_key(secret),
        default_adapter=default_adapter,
        model_map=model_map or {},
        record=record,
        tenant_admin=tenant_admin,
    )
    session.add(row)
    session.commit()
    return row, secret


def list_keys(session: Session, tenant_id: str) -> list[ApiKey]:
    get_tenant(session, tenant_id)
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)))


def revoke_key(session: Session, tenant_id: str, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"No key `{key_id}` for tenant `{tenant_id}`.", param="key_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def find_active_key(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.hash == key_hash, ApiKey.revoked_at.is_(None)))
