"""Console sessions in the database, so that signing out and expiry really end them and every replica shares them.

The cookie holds 32 random bytes; the table holds only their SHA-256, so reading the table does not let anyone sign
in. A session signed in with a tenant's key ends when that key is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway import keys, tenants
from gateway.store.models import ApiKey, ConsoleSession, utcnow


@dataclass(frozen=True)
class Viewer:
    """Who is signed in, and what that allows."""

    tenant_id: str | None  # None: the admin key, every tenant
    key_id: str | None
    tenant_admin: bool  # a tenant key marked as tenant admin: may change its own tenant
    csrf_token: str
    expires_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def sees(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id

    def may_change(self, tenant_id: str) -> bool:
        return self.is_admin or (self.tenant_id == tenant_id and self.tenant_admin)


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def sign_in(session: Session, presented: str, admin_key: str | None, ttl_s: float) -> tuple[str, Viewer] | None:
    """A new session for the admin key or an active tenant key: (the cookie's value, the viewer); None for any
    other key. Expired sessions are purged on the way."""
    presented = presented.strip()
    if not presented:
        return None
    if admin_key is not None and secrets.compare_digest(presented.encode(), admin_key.encode()):
        tenant_id, key_id, tenant_admin = None, None, True
    else:
        row = tenants.find_active_key(session, keys.hash_key(presented))
        if row is None:
            return None
        tenant_id, key_id, tenant_admin = row.tenant_id, row.id, row.tenant_admin
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < utcnow()))
    cookie = secrets.token_urlsafe(32)
    record = ConsoleSession(
        id_hash=_hash(cookie),
        tenant_id=tenant_id,
        key_id=key_id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(seconds=ttl_s),
    )
    session.add(record)
    session.commit()
    return cookie, _viewer(record, tenant_admin)


def find(session: Session, cookie: str) -> Viewer | None:
    """The session behind a cookie, if it exists, has not expired, and its key has not been revoked."""
    row = session.get(ConsoleSession, _hash(cookie))
    if row is None or _aware(row.expires_at) <= utcnow():
        return None
    tenant_admin = True
    if row.key_id is not None:
        key = session.scalar(select(ApiKey).where(ApiKey.id == row.key_id, ApiKey.revoked_at.is_(None)))
        if key is None:
            return None
        tenant_admin = key.tenant_admin  # read each time: changing the flag takes effect at once
    return _viewer(row, tenant_admin)


def sign_out(session: Session, cookie: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(cookie)))
    session.commit()


def _viewer(row: ConsoleSession, tenant_admin: bool) -> Viewer:
    return Viewer(row.tenant_id, row.key_id, tenant_admin, row.csrf_token, _aware(row.expires_at))


def _aware(value: datetime) -> datetime:
    # SQLite gives naive datetimes back; they were stored in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
