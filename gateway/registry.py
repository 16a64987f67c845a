"""The adapter registry in the store: aliases and their immutable versions, promotions, the revision counter.

Every write is one transaction that also bumps the revision, so every gateway replica reloads its catalog.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.adapter_check import AdapterInfo
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.store.models import Adapter, AdapterVersion, Promotion, RegistryRevision, utcnow

ALIAS = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def current_revision(session: Session) -> int:
    return session.scalar(select(RegistryRevision.revision).where(RegistryRevision.id == 1)) or 0


def _bump_revision(session: Session) -> None:
    session.execute(
        update(RegistryRevision).where(RegistryRevision.id == 1).values(revision=RegistryRevision.revision + 1)
    )


def bump_revision(session: Session) -> None:
    """For other writes that change how names resolve (a canary starting or ending), in their own transaction."""
    _bump_revision(session)


# Reads for the admin API.


def get_adapter(session: Session, tenant_id: str, alias: str) -> Adapter:
    adapter = session.scalar(select(Adapter).where(Adapter.tenant_id == tenant_id, Adapter.alias == alias))
    if adapter is None:
        raise NotFound(f"No adapter `{alias}` for tenant `{tenant_id}`.", param="alias")
    return adapter


def list_adapters(session: Session, tenant_id: str) -> list[Adapter]:
    return list(session.scalars(select(Adapter).where(Adapter.tenant_id == tenant_id).order_by(Adapter.alias)))


def list_versions(session: Session, adapter: Adapter) -> list[AdapterVersion]:
    return list(
        session.scalars(
            select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id).order_by(AdapterVersion.number)
        )
    )


def get_version(session: Session, tenant_id: str, alias: str, number: int) -> AdapterVersion:
    adapter = get_adapter(session, tenant_id, alias)
    version = session.scalar(
        select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id, AdapterVersion.number == number)
    )
    if version is None:
        raise NotFound(f"No version {alias}@{number} for tenant `{tenant_id}`.", param="version")
    return version


def list_promotions(session: Session, adapter: Adapter) -> list[Promotion]:
    return list(session.scalars(select(Promotion).where(Promotion.adapter_id == adapter.id).order_by(Promotion.id)))


# Writes. Each is one transaction that also bumps the revision, so every replica reloads its catalog.


def create_adapter(session: Session, tenant_id: str, alias: str, options: dict[str, Any]) -> Adapter:
    """An alias with no version yet: the base model serves it until a first version is promoted."""
    if not ALIAS.match(alias):
        raise BadRequest("An adapter alias is 1-64 lower-case letters, digits, '.', '-' or '_'.", param="alias")
    adapter = Adapter(tenant_id=tenant_id, alias=alias, options=options)
    session.add(adapter)
    try:
        _bump_revision(session)  # its UPDATE flushes the INSERT first: a duplicate alias fails here
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"Tenant `{tenant_id}` already has an adapter `{alias}`.", param="alias") from None
    return adapter


def add_version(
    session: Session,
    tenant_id: str,
    alias: str,
    version_id: str,
    artifact: str,
    info: AdapterInfo,
    lineage: dict[str, Any],
) -> AdapterVersion:
    """A new immutable version, numbered one past the alias's last. Creates the alias on first use."""
    if not ALIAS.match(alias):
        raise BadRequest("An adapter alias is 1-64 lower-case letters, digits, '.', '-' or '_'.", param="alias")
    for _attempt in range(5):  # two registrations racing for the alias or the number: the loser tries again
        try:
            adapter = session.scalar(select(Adapter).where(Adapter.tenant_id == tenant_id, Adapter.alias == alias))
            if adapter is None:
                adapter = Adapter(tenant_id=tenant_id, alias=alias, options={})
                session.add(adapter)
                session.flush()
            latest = session.scalar(
                select(func.max(AdapterVersion.number)).where(AdapterVersion.adapter_id == adapter.id)
            )
            version = AdapterVersion(
                id=version_id,
                adapter_id=adapter.id,
                number=(latest or 0) + 1,
                engine_name="lf-" + secrets.token_hex(12),
                artifact=artifact,
                sha256=info.sha256,
                size_bytes=info.size_bytes,
                rank=info.rank,
                alpha=info.alpha,
                target_modules=info.target_modules,
                base_model=info.base_model,
                state="registered",
                lineage=lineage,
            )
            session.add(version)
            _bump_revision(session)
            session.commit()
            return version
        except IntegrityError:
            session.rollback()
    raise Conflict(f"Could not number a new version of `{alias}`; try again.")


def update_options(session: Session, tenant_id: str, alias: str, options: dict[str, Any]) -> Adapter:
    adapter = get_adapter(session, tenant_id, alias)
    adapter.options = {**adapter.options, **options}
    _bump_revision(session)
    session.commit()
    return adapter


def set_state(session: Session, version_id: str, state: str) -> None:
    version = session.get(AdapterVersion, version_id)
    if version is None or version.state == state:
        return
    if version.state == "production" and state != "production":
        raise Conflict(f"Version {version.number} is in production; promote another version first.")
    version.state = state
    if state == "retired":
        version.retired_at = utcnow()
    _bump_revision(session)
    session.commit()


def delete_version(session: Session, version_id: str) -> None:
    """Only for a registration that never completed (the engine refused it); versions are otherwise immutable."""
    version = session.get(AdapterVersion, version_id)
    if version is not None and version.state == "registered":
        session.delete(version)
        _bump_revision(session)
        session.commit()


def flip_production(session: Session, version: AdapterVersion, kind: str, reason: str) -> str | None:
    """Make `version` its alias's production version in one transaction. Returns the previous version's id."""
    adapter = session.get(Adapter, version.adapter_id)
    assert adapter is not None
    previous_id = adapter.production_version_id
    if previous_id == version.id:
        return None
    now = utcnow()
    # Guarded update: if another promotion changed the alias since we read it, ours must not silently win.
    flipped = cast(
        "CursorResult[Any]",  # what an UPDATE returns
        session.execute(
            update(Adapter)
            .where(Adapter.id == adapter.id, _is(Adapter.production_version_id, previous_id))
            .values(production_version_id=version.id)
        ),
    ).rowcount
    if flipped != 1:
        session.rollback()
        raise Conflict(f"`{adapter.alias}` was promoted by someone else meanwhile; look again and retry.")
    if previous_id:
        session.execute(
            update(AdapterVersion).where(AdapterVersion.id == previous_id).values(state="retired", retired_at=now)
        )
    session.execute(
        update(AdapterVersion).where(AdapterVersion.id == version.id).values(state="production", promoted_at=now)
    )
    session.add(
        Promotion(
            adapter_id=adapter.id, from_version_id=previous_id, to_version_id=version.id, kind=kind, reason=reason
        )
    )
    _bump_revision(session)
    session.commit()
    return previous_id


def rollback_target(session: Session, adapter: Adapter) -> AdapterVersion:
    """The version that was in production before the current one."""
    last = session.scalar(
        select(Promotion)
        .where(Promotion.adapter_id == adapter.id, Promotion.to_version_id == adapter.production_version_id)
        .order_by(Promotion.id.desc())
    )
    if last is None or last.from_version_id is None:
        raise Conflict(f"`{adapter.alias}` has no earlier production version to roll back to.")
    version = session.get(AdapterVersion, last.from_version_id)
    assert version is not None
    return version


def _is(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value
