"""Tables of the registry: tenants, their API keys, adapter aliases and their immutable versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Double, ForeignKey, Integer, MetaData, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Per-tenant options owned by other parts (time zone, retention, training settings): free-form JSON.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings so a person can tell keys apart
    hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the key; the key itself is never stored
    default_adapter: Mapped[str | None] = mapped_column(String(200))
    model_map: Mapped[dict[str, Any]] = mapped_column(default=dict)
    record: Mapped[bool] = mapped_column(default=True)  # False: completions with this key are not recorded (eval)
    # True: signed in to the console, this key may change its tenant (keys, settings, adapters); else read-only.
    tenant_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Adapter(Base):
    """An alias (`support`) of a tenant, pointing at its production version."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("tenant_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    # The alias flip is one UPDATE of this column. No FK: the two tables would reference each other.
    production_version_id: Mapped[str | None] = mapped_column(String(32))
    # Options for requests served by this alias (e.g. retrieval on by default), owned by other parts.
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdapterVersion(Base):
    """One immutable adapter version: `support@3`. Its files never change once registered."""

    __tablename__ = "adapter_versions"
    __table_args__ = (UniqueConstraint("adapter_id", "number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    engine_name: Mapped[str] = mapped_column(String(64), unique=True)  # opaque name inside vLLM
    artifact: Mapped[str] = mapped_column(String(1000))  # where its files are (a path or an object-store URI)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    rank: Mapped[int]
    alpha: Mapped[float]
    target_modules: Mapped[list[Any]] = mapped_column(default=list)
    base_model: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), default="registered")  # registered|staged|production|retired
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)  # parent, dataset hash, counts, settings, loss
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]


class Promotion(Base):
    """History of alias flips; a rollback is a promotion back to the version before."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"), index=True)
    from_version_id: Mapped[str | None] = mapped_column(String(32))
    to_version_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # promote | rollback
    reason: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryRevision(Base):
    """One row, bumped by every registry change, so other gateway replicas know to reload."""

    __tablename__ = "registry_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(default=0)


class TrainingRun(Base):
    """One flywheel run of a tenant's adapter. Its row is also the lock: one running run per tenant."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    adapter: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    runner: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | promoted | rejected | skipped | failed
    stage: Mapped[str] = mapped_column(String(32), default="")
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    candidate: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(2000), default="")
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_markdown: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # Set while the run holds the tenant's lock, NULL once it ends: a unique constraint on it allows one running
    # run per tenant on every database, without partial indexes.
    lock: Mapped[str | None] = mapped_column(String(64), unique=True)


class GoldenSet(Base):
    """A tenant's golden evaluation items for one adapter alias (JSONL lines: input, expected, scorer)."""

    __tablename__ = "golden_sets"
    __table_args__ = (UniqueConstraint("tenant_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    items: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# Fine-tuning (gateway/fine_tuning/): OpenAI's files and fine-tuning jobs, with the jobs' events and checkpoints.


class StoredFile(Base):
    """A tenant's uploaded file (`file-...`), or a job's result file. Its bytes live in the file store, never
    overwritten; deleting the file removes both."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))  # fine-tune | fine-tune-results
    filename: Mapped[str] = mapped_column(String(500))
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(1000))  # a path or an object-store URI, never shown
    status: Mapped[str] = mapped_column(String(16), default="processed")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FineTuningJob(Base):
    """A fine-tuning job (`ftjob-...`): OpenAI's fields, and what the trainer needs to run it and to resume it."""

    __tablename__ = "fine_tuning_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(300))  # as asked for: the base model, `support`, `support@3`, `ft:...`
    parent: Mapped[str | None] = mapped_column(String(100))  # the version it continues (`support@3`); None: base
    training_file: Mapped[str] = mapped_column(String(40))
    validation_file: Mapped[str | None] = mapped_column(String(40))
    method: Mapped[dict[str, Any]] = mapped_column(default=dict)  # OpenAI's `method`, "auto" resolved when it runs
    suffix: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)  # `metadata`: a name SQLAlchemy keeps
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(300))
    result_files: Mapped[list[Any]] = mapped_column(default=list)
    trained_tokens: Mapped[int | None] = mapped_column(Integer)
    estimated_finish: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    # The trainer's side: the training run that holds the tenant's lock while the job trains, how many times it
    # was started (a lost trainer's job is queued again), where training stands, what validation found.
    run_id: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class FineTuningEvent(Base):
    """One event of a job, as `GET /v1/fine_tuning/jobs/{id}/events` lists them (newest first, by `seq`)."""

    __tablename__ = "fine_tuning_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(8))  # info | warn | error
    message: Mapped[str] = mapped_column(String(2000))
    type: Mapped[str] = mapped_column(String(16))  # message | metrics
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FineTuningCheckpoint(Base):
    """An adapter saved while a job trained (at the end of an epoch): listed by the checkpoints API, and where a
    job whose trainer was lost resumes."""

    __tablename__ = "fine_tuning_checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(300))
    location: Mapped[str] = mapped_column(String(1000))  # the adapter's .tar.gz in the file store
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The console (gateway/console/): signed-in sessions, shared by every replica through the database.


class ConsoleSession(Base):
    """One signed-in console session. The cookie holds a random id; only its hash is stored, so the table alone
    cannot be used to sign in. Signing out deletes the row; an expired row is refused and later purged."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's value
    # None: signed in with the admin key (every tenant); else the tenant of the key used.
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # The tenant key used: a session ends when its key is revoked. None for the admin key.
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))  # sent back with every change; compared in constant time
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


# Canaries (gateway/canary/): a candidate version serving a sticky share of its alias's users until the sequential
# test (or its budget) decides. In the database, so a canary survives restarts and every replica splits alike.


class Canary(Base):
    """One canary of an alias: its arms, its rules, and, once decided, the decision with its evidence."""

    __tablename__ = "canaries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # can_<hex>: also salts the split's hash
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"), index=True)
    candidate_version_id: Mapped[str] = mapped_column(String(32))
    control_version_id: Mapped[str | None] = mapped_column(String(32))  # production when it started; None: base
    share: Mapped[float] = mapped_column(Double)
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)  # gateway/canary/decision.py CanaryPolicy
    # running → deciding (a replica claimed the decision) → promoted | rolled_back | cancelled
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")
    decision: Mapped[dict[str, Any]] = mapped_column(default=dict)  # counts, rates, the statistic, who decided
    run_id: Mapped[str | None] = mapped_column(String(40))  # the training run that started it, if any
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]  # a claim older than the loop's lease may be taken over (a lost replica)
    claimed_by: Mapped[str] = mapped_column(String(200), default="")
    decided_at: Mapped[datetime | None]
    # The adapter's id while the canary runs, NULL once decided: one running canary per alias on every database.
    lock: Mapped[int | None] = mapped_column(Integer, unique=True)
