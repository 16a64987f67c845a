"""Fine-tuning jobs in the store, as a tenant sees them: created, listed, cancelled; their events and checkpoints;
and the name of the model a job makes, `ft:<base>:<tenant>:<suffix>:<job id>`.

    validating_files ─▶ queued ─▶ running ─▶ succeeded
           │              │          ├─────▶ failed
           └──────────────┴──────────┴─────▶ cancelled      (and failed, from validating_files)

Another tenant's job is "not found", whatever its id.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.errors import BadRequest, NotFound
from gateway.fine_tuning.files import unix
from gateway.fine_tuning.protocol import (
    CheckpointMetrics,
    CreateFineTuningJobRequest,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobError,
    JobHyperparameters,
)
from gateway.fine_tuning.protocol import FineTuningJob as JobObject
from gateway.store.models import FineTuningCheckpoint, FineTuningEvent, FineTuningJob, utcnow

FINAL = ("succeeded", "failed", "cancelled")
HYPERPARAMETERS = ("batch_size", "learning_rate_multiplier", "n_epochs")


def new_job_id() -> str:
    return "ftjob-" + secrets.token_hex(12)  # lower-case hex: also a valid adapter alias, the job's own


def fine_tuned_name(base_model: str, tenant_id: str, suffix: str | None, job_id: str) -> str:
    return f"ft:{base_model}:{tenant_id}:{suffix or ''}:{job_id}"


def method_of(request: CreateFineTuningJobRequest) -> dict[str, Any]:
    """OpenAI's `method` with every hyperparameter present ("auto" where not given); the older top-level
    `hyperparameters` become a supervised method's."""
    method = request.method
    if method is not None and method.type == "reinforcement":
        raise BadRequest("Reinforcement fine-tuning is not supported here; use `supervised` or `dpo`.", param="method")
    kind = method.type if method is not None else "supervised"
    given = getattr(method, kind, None) if method is not None else None
    if request.hyperparameters is not None:
        if given is not None and given.hyperparameters.model_fields_set:
            raise BadRequest(
                "Give the hyperparameters in `method` only (the top-level `hyperparameters` are deprecated).",
                param="hyperparameters",
            )
        if kind == "dpo":
            raise BadRequest("A `dpo` job takes its hyperparameters in `method.dpo.hyperparameters`.",
                             param="hyperparameters")  # fmt: skip
        values = request.hyperparameters.model_dump(include=set(HYPERPARAMETERS))
    else:
        names = (*HYPERPARAMETERS, "beta") if kind == "dpo" else HYPERPARAMETERS
        values = given.hyperparameters.model_dump(include=set(names)) if given is not None else {}
        values = {name: values.get(name, "auto") for name in names}
    return {"type": kind, kind: {"hyperparameters": values}}


def add_job(
    session: Session,
    *,
    job_id: str,
    tenant_id: str,
    request: CreateFineTuningJobRequest,
    parent: str | None,
    seed: int,
) -> FineTuningJob:
    job = FineTuningJob(
        id=job_id,
        tenant_id=tenant_id,
        model=request.model,
        parent=parent,
        training_file=request.training_file,
        validation_file=request.validation_file,
        method=method_of(request),
        suffix=request.suffix,
        seed=seed,
        meta=request.metadata,
        status="validating_files",
        result_files=[],
        attempts=0,
        progress={},
        data={},
    )
    session.add(job)
    session.flush()
    add_event(session, job, f"Created fine-tuning job: {job_id}")
    add_event(session, job, f"Validating training file: {request.training_file}"
              + (f" and validation file: {request.validation_file}" if request.validation_file else ""))  # fmt: skip
    session.commit()
    return job


def add_event(
    session: Session,
    job: FineTuningJob,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> None:
    """An event of the job, in the caller's transaction."""
    session.add(
        FineTuningEvent(
            id="ftevent-" + secrets.token_hex(12), job_id=job.id, level=level, message=message[:2000], type=type,
            data=data,
        )
    )  # fmt: skip


def get_job(session: Session, tenant_id: str, job_id: str) -> FineTuningJob:
    job = session.get(FineTuningJob, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"Could not find fine-tune: {job_id}", param="fine_tuning_job_id")
    return job


def list_jobs(
    session: Session, tenant_id: str, after: str | None, limit: int, metadata: Mapping[str, str] | None
) -> tuple[list[FineTuningJob], bool]:
    """Newest first, after the job `after`. `metadata`: only jobs carrying all these pairs; an empty mapping means
    jobs without metadata (OpenAI's `metadata=null`)."""
    query = select(FineTuningJob).where(FineTuningJob.tenant_id == tenant_id)
    if after:
        cursor = get_job(session, tenant_id, after)
        query = query.where(
            or_(
                FineTuningJob.created_at < cursor.created_at,
                (FineTuningJob.created_at == cursor.created_at) & (FineTuningJob.id < cursor.id),
            )
        )
    query = query.order_by(FineTuningJob.created_at.desc(), FineTuningJob.id.desc())
    found: list[FineTuningJob] = []
    # Metadata is JSON: matched here, not in SQL, so it works the same on every database; a tenant's jobs are few.
    for job in session.scalars(query.execution_options(yield_per=200)):
        if metadata is not None and not _matches(job.meta, metadata):
            continue
        found.append(job)
        if len(found) > limit:
            break
    return found[:limit], len(found) > limit


def _matches(meta: dict[str, Any] | None, wanted: Mapping[str, str]) -> bool:
    if not wanted:
        return not meta
    return meta is not None and all(meta.get(key) == value for key, value in wanted.items())


def cancel(session: Session, tenant_id: str, job_id: str) -> FineTuningJob:
    """Cancel at once. A running job's trainer sees it at its next step and stops; until it has stopped, its
    training run keeps the tenant's lock, so two trainings of one tenant never overlap."""
    job = get_job(session, tenant_id, job_id)
    if job.status in FINAL:
        raise BadRequest(f"Job {job_id} has already {job.status}; only an unfinished job can be cancelled.",
                         param="fine_tuning_job_id", code="job_finished")  # fmt: skip
    was = job.status
    job.status, job.finished_at, job.estimated_finish = "cancelled", utcnow(), None
    add_event(session, job, "Fine-tuning job cancelled" + ("; training stops at its next step" if was == "running"
                                                          else ""))  # fmt: skip
    session.commit()
    return job


def list_events(
    session: Session, job: FineTuningJob, after: str | None, limit: int
) -> tuple[list[FineTuningEvent], bool]:
    query = select(FineTuningEvent).where(FineTuningEvent.job_id == job.id)
    if after:
        cursor = session.scalar(query.where(FineTuningEvent.id == after))
        if cursor is None:
            raise NotFound(f"No event {after} in job {job.id}.", param="after")
        query = query.where(FineTuningEvent.seq < cursor.seq)
    rows = list(session.scalars(query.order_by(FineTuningEvent.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_checkpoints(
    session: Session, job: FineTuningJob, after: str | None, limit: int
) -> tuple[list[FineTuningCheckpoint], bool]:
    query = select(FineTuningCheckpoint).where(FineTuningCheckpoint.job_id == job.id)
    if after:
        cursor = session.scalar(query.where(FineTuningCheckpoint.id == after))
        if cursor is None:
            raise NotFound(f"No checkpoint {after} in job {job.id}.", param="after")
        query = query.where(FineTuningCheckpoint.seq < cursor.seq)
    rows = list(session.scalars(query.order_by(FineTuningCheckpoint.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


# As the API shows them.


def job_object(job: FineTuningJob) -> JobObject:
    kind = job.method.get("type", "supervised")
    hyper = (job.method.get(kind) or {}).get("hyperparameters") or {}
    return JobObject(
        id=job.id,
        created_at=unix(job.created_at),
        error=JobError(**job.error) if job.error else None,
        fine_tuned_model=job.fine_tuned_model,
        finished_at=unix(job.finished_at) if job.finished_at else None,
        hyperparameters=JobHyperparameters(**{name: hyper.get(name, "auto") for name in HYPERPARAMETERS}),
        model=job.model,
        organization_id=job.tenant_id,
        result_files=list(job.result_files),
        status=job.status,
        trained_tokens=job.trained_tokens,
        training_file=job.training_file,
        validation_file=job.validation_file,
        seed=job.seed,
        estimated_finish=unix(job.estimated_finish) if job.estimated_finish and job.status == "running" else None,
        method=job.method,
        metadata=job.meta,
    )


def event_object(event: FineTuningEvent) -> FineTuningJobEvent:
    return FineTuningJobEvent(
        id=event.id,
        created_at=unix(event.created_at),
        level=event.level,
        message=event.message,
        type=event.type,
        data=event.data,
    )


def checkpoint_object(checkpoint: FineTuningCheckpoint) -> FineTuningJobCheckpoint:
    return FineTuningJobCheckpoint(
        id=checkpoint.id,
        created_at=unix(checkpoint.created_at),
        fine_tuned_model_checkpoint=checkpoint.fine_tuned_model_checkpoint,
        step_number=checkpoint.step_number,
        metrics=CheckpointMetrics.model_validate(checkpoint.metrics),
        fine_tuning_job_id=checkpoint.job_id,
    )
