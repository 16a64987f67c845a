"""The catalog: an in-memory, immutable snapshot of the registry that resolves a request's `model` with no
database access on the request path.

It is replaced whole whenever the registry's revision changes (here, or on another replica, found by polling), so
a request sees one consistent view and the alias flip is atomic for readers too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.canary.split import to_candidate
from gateway.errors import ModelNotFound
from gateway.registry import current_revision
from gateway.store.models import Adapter, AdapterVersion, Canary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionRef:
    id: str
    tenant_id: str
    alias: str
    number: int
    engine_name: str
    artifact: str
    state: str
    created: int = 0  # unix time, for /v1/models

    @property
    def public_name(self) -> str:
        return f"{self.alias}@{self.number}"


@dataclass(frozen=True)
class CanaryRef:
    """A running canary (gateway/canary/): `share` of the alias's users get the candidate, the rest production."""

    id: str
    share: float
    candidate: VersionRef
    control: VersionRef | None  # None: the base model

    def arm(self, unit: str) -> VersionRef | None:
        """The version that serves `unit` (an end user, or a key): sticky, and the same on every replica."""
        return self.candidate if to_candidate(self.id, unit, self.share) else self.control


@dataclass(frozen=True)
class AliasRef:
    tenant_id: str
    alias: str
    production: VersionRef | None
    options: dict[str, Any] = field(default_factory=dict)
    canary: CanaryRef | None = None


@dataclass(frozen=True)
class Catalog:
    """Everything a request needs to find its adapter, as of one registry revision."""

    revision: int = -1
    aliases: dict[tuple[str, str], AliasRef] = field(default_factory=dict)
    versions: dict[tuple[str, str, int], VersionRef] = field(default_factory=dict)
    fine_tuned: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, `ft:...`) → `ftjob-...@1`

    def resolve(self, tenant_id: str, model: str, split_by: str | None = None) -> tuple[AliasRef, VersionRef | None]:
        """`support` → its production version (None: no version promoted yet, the base model serves it);
        `support@3` → version 3; `ft:...` → the version its fine-tuning job made. Another tenant's name →
        ModelNotFound. During a canary, the alias's own name serves the arm of `split_by` (the end user, else the
        key); pinned names are never split."""
        if model.startswith("ft:"):
            pinned = self.fine_tuned.get((tenant_id, model))
            if pinned is None:
                raise ModelNotFound(model)
            model = pinned
        alias, _, number = model.partition("@")
        entry = self.aliases.get((tenant_id, alias))
        if entry is None:
            raise ModelNotFound(model)
        if not number:
            if entry.canary is not None and split_by is not None:
                return entry, entry.canary.arm(split_by)
            return entry, entry.production
        version = self.versions.get((tenant_id, alias, int(number))) if number.isdigit() else None
        if version is None:
            raise ModelNotFound(model)
        return entry, version

    def tenant_aliases(self, tenant_id: str) -> list[AliasRef]:
        return [entry for (tenant, _), entry in sorted(self.aliases.items()) if tenant == tenant_id]

    def tenant_versions(self, tenant_id: str) -> list[VersionRef]:
        return [version for key, version in sorted(self.versions.items()) if key[0] == tenant_id]

    def tenant_fine_tuned(self, tenant_id: str) -> list[tuple[str, VersionRef]]:
        """The tenant's `ft:` model names, with the version each serves."""
        found = []
        for (tenant, name), pinned in sorted(self.fine_tuned.items()):
            alias, _, number = pinned.rpartition("@")
            version = self.versions.get((tenant, alias, int(number))) if tenant == tenant_id else None
            if version is not None:
                found.append((name, version))
        return found

    def wanted(self) -> dict[str, VersionRef]:
        """Versions every engine must hold loaded: production and staged ones, by engine name."""
        return {v.engine_name: v for v in self.versions.values() if v.state in ("production", "staged")}


def load_catalog(session: Session) -> Catalog:
    revision = current_revision(session)
    rows = session.execute(select(AdapterVersion, Adapter).join(Adapter, AdapterVersion.adapter_id == Adapter.id))
    versions: dict[tuple[str, str, int], VersionRef] = {}
    by_id: dict[str, VersionRef] = {}
    for version, adapter in rows:
        ref = VersionRef(
            version.id,
            adapter.tenant_id,
            adapter.alias,
            version.number,
            version.engine_name,
            version.artifact,
            version.state,
            int(version.created_at.timestamp()),
        )
        versions[(adapter.tenant_id, adapter.alias, version.number)] = ref
        by_id[version.id] = ref
    aliases = {
        (a.tenant_id, a.alias): AliasRef(
            a.tenant_id, a.alias, by_id.get(a.production_version_id or ""), dict(a.options or {})
        )
        for a in session.scalars(select(Adapter))
    }
    aliases = _with_canaries(session, aliases, by_id)
    # A fine-tuning job's model name is an option of the job's own alias (gateway/fine_tuning/service.py).
    fine_tuned = {
        (entry.tenant_id, named["name"]): f"{entry.alias}@{named['version']}"
        for entry in aliases.values()
        if isinstance(named := entry.options.get("fine_tuned_model"), dict)
    }
    return Catalog(revision, aliases, versions, fine_tuned)


def _with_canaries(
    session: Session, aliases: dict[tuple[str, str], AliasRef], by_id: dict[str, VersionRef]
) -> dict[tuple[str, str], AliasRef]:
    """Aliases with their running canary. A canary whose candidate left the engines, or whose alias was promoted by
    other means since it started, splits nothing (its decision loop ends it)."""
    rows = session.execute(
        select(Canary, Adapter)
        .join(Adapter, Canary.adapter_id == Adapter.id)
        .where(Canary.status.in_(("running", "deciding")))
    )
    for canary, adapter in rows:
        key = (adapter.tenant_id, adapter.alias)
        candidate, entry = by_id.get(canary.candidate_version_id), aliases.get(key)
        if entry is None or candidate is None or candidate.state != "staged":
            continue
        if (entry.production.id if entry.production else None) != canary.control_version_id:
            continue
        aliases[key] = dataclasses.replace(
            entry, canary=CanaryRef(canary.id, canary.share, candidate, entry.production)
        )
    return aliases


class CatalogHolder:
    """The current catalog of this replica, refreshed after local changes and by polling for others'."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self.current = Catalog()

    async def refresh(self) -> Catalog:
        self.current = await asyncio.to_thread(self._load)
        return self.current

    def _load(self) -> Catalog:
        with self._sessions() as session:
            return load_catalog(session)

    async def poll(self, interval_s: float, on_change: Callable[[], Awaitable[None]]) -> None:
        """Reload whenever another replica changed the registry; runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                revision = await asyncio.to_thread(self._revision)
                if revision != self.current.revision:
                    await self.refresh()
                    await on_change()
            except Exception:  # a database blip must not end the loop
                log.exception("registry poll failed")

    def _revision(self) -> int:
        with self._sessions() as session:
            return current_revision(session)
