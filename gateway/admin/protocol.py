"""Wire types of the admin API. Nothing here ever carries a file path or an engine-internal name."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.store.models import AdapterVersion as AdapterVersionRow
from gateway.store.models import ApiKey, Promotion, Tenant


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantCreate(_Strict):
    id: str = Field(description="Stable id: lower-case letters, digits, '-' or '_'.")
    name: str = ""
    settings: dict[str, Any] = Field(default_factory=dict, description="Time zone, retention, training settings.")


class TenantUpdate(_Strict):
    name: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="Merged into the current settings.")


class TenantOut(BaseModel):
    id: str
    name: str
    settings: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: Tenant) -> TenantOut:
        return cls(id=row.id, name=row.name, settings=row.settings, created_at=row.created_at)


class KeyCreate(_Strict):
    name: str = ""
    default_adapter: str | None = Field(None, description="Served when a request names no model.")
    model_map: dict[str, str] = Field(default_factory=dict, description="e.g. {'gpt-4o-mini': 'support'}.")
    record: bool = Field(True, description="False: this key's completions are not recorded (evaluation traffic).")
    tenant_admin: bool = Field(
        False, description="True: signed in to the console with it, this key may change its tenant; else read-only."
    )


class KeyOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    prefix: str
    default_adapter: str | None
    model_map: dict[str, str]
    record: bool
    tenant_admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            prefix=row.prefix,
            default_adapter=row.default_adapter,
            model_map=row.model_map,
            record=row.record,
            tenant_admin=row.tenant_admin,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The API key. Shown this once; only its hash is kept.")


class VersionOut(BaseModel):
    id: str = Field(description="`alias@number`, the name a client can pin.")
    alias: str
    version: int
    state: str
    rank: int
    alpha: float
    target_modules: list[str]
    base_model: str
    sha256: str
    size_bytes: int
    lineage: dict[str, Any]
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None

    @classmethod
    def of(cls, row: AdapterVersionRow, alias: str) -> VersionOut:
        return cls(
            id=f"{alias}@{row.number}",
            alias=alias,
            version=row.number,
            state=row.state,
            rank=row.rank,
            alpha=row.alpha,
            target_modules=row.target_modules,
            base_model=row.base_model,
            sha256=row.sha256,
            size_bytes=row.size_bytes,
            lineage=row.lineage,
            created_at=row.created_at,
            promoted_at=row.promoted_at,
            retired_at=row.retired_at,
        )


class AdapterOut(BaseModel):
    alias: str
    production: str | None = Field(description="The version the alias serves, e.g. `support@2`.")
    options: dict[str, Any]
    versions: list[VersionOut]


class AdapterCreate(_Strict):
    alias: str = Field(description="The name clients use; served by the base model until a version is promoted.")
    options: dict[str, Any] = Field(default_factory=dict)


class AdapterUpdate(_Strict):
    options: dict[str, Any] = Field(description="Merged into the alias's options, e.g. {'retrieval': {'top_k': 4}}.")


class RegisterFromPath(_Strict):
    path: str = Field(description="A PEFT adapter directory readable by the gateway.")
    lineage: dict[str, Any] = Field(
        default_factory=dict, description="Where it came from: parent, dataset, settings..."
    )


class Promote(_Strict):
    version: int = Field(ge=1)
    reason: str = Field("", max_length=1000)


class Rollback(_Strict):
    reason: str = Field("", max_length=1000)


class PromotionOut(BaseModel):
    from_version: str | None
    to_version: str
    kind: str
    reason: str
    created_at: datetime

    @classmethod
    def of(cls, row: Promotion, numbers: dict[str, int], alias: str) -> PromotionOut:
        def name(version_id: str | None) -> str | None:
            return f"{alias}@{numbers[version_id]}" if version_id in numbers else None

        return cls(
            from_version=name(row.from_version_id),
            to_version=name(row.to_version_id) or "",
            kind=row.kind,
            reason=row.reason,
            created_at=row.created_at,
        )
