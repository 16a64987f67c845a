"""The job queue as the trainer works it, over the admin API: claim the oldest queued job a trainer may run, report
progress (each report is also the heartbeat), add checkpoints, end the job.

A claimed job holds a training run (gateway/training_api/runs.py), the same per-tenant lock as the nightly runs:
a tenant already training keeps its jobs queued, and at most `max_running_jobs` jobs train at once. A trainer that
stops sending heartbeats loses its run after the lease; its job is then queued again, to resume from its last
checkpoint on the next claim, at most `max_attempts` times in all, and fails after that. A trainer that stops
cleanly (SIGTERM, Ctrl-C) hands the job back at once, and that does not count as an attempt.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from gateway.errors import Conflict, NotFound
from gateway.fine_tuning.jobs import add_event
from gateway.fine_tuning.settings import FineTuningSettings
from gateway.store.models import FineTuningCheckpoint, FineTuningJob, TrainingRun, utcnow
from gateway.training_api import runs

TRIGGER = "fine_tuning"  # the training run's trigger, for people reading the runs list


def claim(session: Session, runner: str, lease_s: float, settings: FineTuningSettings) -> FineTuningJob | None:
    """The oldest queued job whose tenant is not training, now `running` and holding its tenant's lock; None when
    none may start (nothing queued, every queued tenant training, or `max_running_jobs` reached)."""
    expire_lost(session, lease_s, settings)
    if _running(session) >= settings.max_running_jobs:
        return None
    locked = set(session.scalars(select(TrainingRun.lock).where(TrainingRun.lock.is_not(None))))
    queued = select(FineTuningJob).where(FineTuningJob.status == "queued")
    for job in list(session.scalars(queued.order_by(FineTuningJob.created_at, FineTuningJob.id))):
        if job.tenant_id in locked:
            continue
        try:
            run = runs.start_run(session, job.tenant_id, job.id, TRIGGER, runner, lease_s)
        except Conflict:  # the tenant started training meanwhile
            locked.add(job.tenant_id)
            continue
        start = (
            update(FineTuningJob)
            .where(FineTuningJob.id == job.id, FineTuningJob.status == "queued")
            .values(status="running", run_id=run.id, attempts=FineTuningJob.attempts + 1)
        )
        taken = cast("CursorResult[Any]", session.execute(start)).rowcount
        if not taken:  # another trainer claimed it, or it was cancelled, between the read and now
            session.rollback()
            runs.update_run(
                session, job.tenant_id, run.id, {"status": "skipped", "reason": "claimed elsewhere"}, lease_s
            )
            continue
        session.refresh(job)
        add_event(session, job, "Fine-tuning job started" + (f" (attempt {job.attempts})" if job.attempts > 1 else ""))
        session.commit()
        if _running(session) > settings.max_running_jobs:  # two claims raced past the limit: this one waits
            _requeue(session, job, "another job took the last free place meanwhile", count=False, quiet=True)
            runs.update_run(session, job.tenant_id, run.id, {"status": "skipped", "reason": "over the limit"}, lease_s)
            return None
        return job
    return None


def _running(session: Session) -> int:
    # Runs, not jobs: a cancelled job's run keeps its place until the trainer has stopped.
    query = select(func.count()).select_from(TrainingRun)
    return session.scalar(query.where(TrainingRun.trigger == TRIGGER, TrainingRun.status == "running")) or 0


def job_of_run(session: Session, job_id: str, run_id: str, lease_s: float) -> FineTuningJob:
    """The job, if `run_id` still runs it; else 409 `job_lost` (the run lost its lease, or the job is elsewhere)."""
    job = session.get(FineTuningJob, job_id)
    if job is None:
        raise NotFound(f"No fine-tuning job {job_id}.", param="job_id")
    run = session.get(TrainingRun, run_id)
    if job.run_id != run_id or run is None or run.status != "running":
        runs.expire_lost(session, lease_s, job.tenant_id)
        raise Conflict(f"Run {run_id} no longer runs job {job_id}; stop training it.", code="job_lost")
    return job


def report(
    session: Session,
    job_id: str,
    run_id: str,
    lease_s: float,
    *,
    events: list[dict[str, Any]],
    progress: dict[str, Any] | None,
    method: dict[str, Any] | None,
    estimated_finish: Any,
) -> str:
    """A trainer's report on a job it runs, which is also its heartbeat. Returns the job's status: `cancelled`
    tells the trainer to stop at its next step."""
    job = job_of_run(session, job_id, run_id, lease_s)
    changes: dict[str, Any] = {"stage": "training"}
    if progress is not None:
        changes["progress"] = progress
    runs.update_run(session, job.tenant_id, run_id, changes, lease_s)
    if job.status == "running":
        for event in events:
            add_event(session, job, event["message"], level=event["level"], type=event["type"], data=event["data"])
        if progress is not None:
            job.progress = progress
        if method is not None and method.get("type") == job.method.get("type"):
            job.method = method  # "auto" resolved into the values used
        if estimated_finish is not None:
            job.estimated_finish = estimated_finish
    session.commit()
    return job.status


def add_checkpoint(
    session: Session,
    job: FineTuningJob,
    checkpoint_id: str,
    step: int,
    metrics: dict[str, Any],
    name: str,
    location: str,
) -> FineTuningCheckpoint:
    checkpoint = FineTuningCheckpoint(
        id=checkpoint_id,
        job_id=job.id,
        step_number=step,
        metrics={"step": step, **metrics},
        fine_tuned_model_checkpoint=name,
        location=location,
    )
    session.add(checkpoint)
    add_event(session, job, f"Checkpoint created at step {step}", data={"step": step, "checkpoint": checkpoint_id})
    session.commit()
    return checkpoint


def last_checkpoint(session: Session, job_id: str) -> FineTuningCheckpoint | None:
    query = select(FineTuningCheckpoint).where(FineTuningCheckpoint.job_id == job_id)
    return session.scalar(query.order_by(FineTuningCheckpoint.seq.desc()).limit(1))


def succeed(
    session: Session,
    job_id: str,
    run_id: str,
    lease_s: float,
    *,
    fine_tuned_model: str,
    result_file: str | None,
    trained_tokens: int | None,
) -> FineTuningJob:
    job = job_of_run(session, job_id, run_id, lease_s)
    if job.status != "running":
        raise Conflict(f"Job {job_id} is {job.status}; its model was not kept.", code=f"job_{job.status}")
    job.status, job.finished_at, job.estimated_finish = "succeeded", utcnow(), None
    job.fine_tuned_model, job.trained_tokens = fine_tuned_model, trained_tokens
    job.result_files = [result_file] if result_file else []
    add_event(session, job, f"New fine-tuned model created: {fine_tuned_model}")
    add_event(session, job, "The job has successfully completed")
    session.commit()
    runs.update_run(session, job.tenant_id, run_id, {"status": "succeeded", "reason": fine_tuned_model}, lease_s)
    return job


def end(
    session: Session, job_id: str, run_id: str, lease_s: float, status: str, error: dict[str, Any] | None, message: str
) -> FineTuningJob:
    """The trainer stopped working on the job: it `failed` (with OpenAI's error object), it saw the job
    `cancelled`, or it was `interrupted` (the trainer is stopping: the job is queued again at once)."""
    job = job_of_run(session, job_id, run_id, lease_s)
    reason = "cancelled by the tenant"
    if job.status == "running" and status == "interrupted":
        reason = f"interrupted: {message or 'the trainer stopped'}"
        _requeue(session, job, message or "the trainer stopped", count=False)
    elif job.status == "running":
        job.status, job.finished_at, job.estimated_finish = "failed", utcnow(), None
        job.error = error or {"code": "training_failed", "message": message or "Training failed.", "param": None}
        add_event(session, job, f"The job failed: {job.error['message']}", level="error")
        reason = job.error["message"]
    session.commit()
    run_status = "cancelled" if job.status == "cancelled" else "failed"
    runs.update_run(session, job.tenant_id, run_id, {"status": run_status, "reason": reason[:2000]}, lease_s)
    return job


def expire_lost(session: Session, lease_s: float, settings: FineTuningSettings) -> int:
    """Runs whose trainer stopped sending heartbeats lose their lease; their running jobs are queued again (to
    resume from their last checkpoint), or fail after `max_attempts`. Returns how many jobs that touched."""
    runs.expire_lost(session, lease_s)
    lost = session.scalars(
        select(FineTuningJob)
        .join(TrainingRun, TrainingRun.id == FineTuningJob.run_id)
        .where(FineTuningJob.status == "running", TrainingRun.status != "running")
    ).all()
    for job in lost:
        step = (job.progress or {}).get("step")
        where = f" at step {step}" if step else ""
        if job.attempts < settings.max_attempts:
            _requeue(session, job, f"the trainer running it stopped sending heartbeats{where}")
        else:
            job.status, job.finished_at, job.estimated_finish = "failed", utcnow(), None
            message = (f"The trainer running this job was lost{where}, {job.attempts} times "
                       f"(max_attempts {settings.max_attempts}); the job is not retried again.")  # fmt: skip
            job.error = {"code": "trainer_lost", "message": message, "param": None}
            add_event(session, job, f"The job failed: {message}", level="error")
    session.commit()
    return len(lost)


def _requeue(session: Session, job: FineTuningJob, why: str, *, count: bool = True, quiet: bool = False) -> None:
    """Back to `queued`, to resume from the last checkpoint. `count=False`: this start does not count as an
    attempt (the trainer stopped cleanly, or never began)."""
    if job.status != "running":
        session.commit()
        return
    checkpoint = last_checkpoint(session, job.id)
    resume = f"from the checkpoint at step {checkpoint.step_number}" if checkpoint else "from the start"
    job.status, job.run_id, job.estimated_finish = "queued", None, None
    if not count:
        job.attempts = max(0, job.attempts - 1)
    if not quiet:
        add_event(session, job, f"Fine-tuning job queued again: {why}; it resumes {resume}", level="warn")
    session.commit()
