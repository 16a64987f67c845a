"""Admin routes of fine-tuning (admin key): the trainer's side of the job queue (claim, report, checkpoints, complete,
end, the job's files), a tenant's jobs for people, and promoting a job's model to a tenant alias."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from gateway import tenants
from gateway.admin.protocol import VersionOut
from gateway.deps import AdminDep
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.fine_tuning import jobs, queue
from gateway.fine_tuning.protocol import FineTuningJob, FineTuningJobCheckpoint, FineTuningJobList
from gateway.fine_tuning.runner_protocol import Claim, ClaimedJob, End, PromoteJob, Report, Reported
from gateway.state import Gateway

router = APIRouter(prefix="/admin")


@router.post("/fine-tuning/claim", response_model=None)
def claim(body: Claim, gw: AdminDep) -> ClaimedJob | Response:
    """The oldest queued job this trainer may run, now running; 204 when there is none to start."""
    claimed = gw.fine_tuning.claim(body.runner)
    return claimed if claimed is not None else Response(status_code=204)


@router.post("/fine-tuning/jobs/{job_id}/report")
def report(job_id: str, body: Report, gw: AdminDep) -> Reported:
    """Progress and events of a running job; also the heartbeat. 409 `job_lost` once the run lost the job."""
    with gw.sessions() as session:
        status = queue.report(
            session, job_id, body.run_id, gw.settings.training.lease_s,
            events=[event.model_dump() for event in body.events], progress=body.progress, method=body.method,
            estimated_finish=_moment(body.estimated_finish),
        )  # fmt: skip
    return Reported(status=status)


@router.get("/fine-tuning/jobs/{job_id}/files/{file_id}")
def job_file(job_id: str, file_id: str, gw: AdminDep) -> StreamingResponse:
    return StreamingResponse(gw.fine_tuning.job_file(job_id, file_id), media_type="application/octet-stream")


@router.post("/fine-tuning/jobs/{job_id}/checkpoints", status_code=201)
async def add_checkpoint(job_id: str, request: Request, gw: AdminDep) -> FineTuningJobCheckpoint:
    """Multipart: `run_id`, `step_number`, `metrics` (JSON), `file` (the adapter as a .tar.gz)."""
    form = await _form(request, gw)
    try:
        archive = _file(form, "file")
        metrics = _json(form.get("metrics"), "metrics")
        step = _int(form.get("step_number"), "step_number")
        checkpoint = await run_in_threadpool(
            gw.fine_tuning.add_checkpoint, job_id, str(form.get("run_id") or ""), step, metrics, archive.file
        )
    finally:
        await form.close()
    return jobs.checkpoint_object(checkpoint)


@router.get("/fine-tuning/jobs/{job_id}/checkpoints/{checkpoint_id}/archive")
def checkpoint_archive(job_id: str, checkpoint_id: str, gw: AdminDep) -> StreamingResponse:
    """The last checkpoint's adapter (.tar.gz), which a job resumes from."""
    return StreamingResponse(gw.fine_tuning.checkpoint_archive(job_id, checkpoint_id), media_type="application/gzip")


@router.post("/fine-tuning/jobs/{job_id}/complete")
async def complete(job_id: str, request: Request, gw: AdminDep) -> FineTuningJob:
    """Multipart: `run_id`, `adapter` (.tar.gz), `results` (the metrics CSV), `summary` (JSON: `trained_tokens`,
    `lineage`). The adapter is checked like any upload, registered, and served at once as the job's model."""
    form = await _form(request, gw)
    try:
        adapter = _file(form, "adapter")
        results = form.get("results")
        summary = _json(form.get("summary"), "summary")
        return await gw.fine_tuning.complete(
            job_id,
            str(form.get("run_id") or ""),
            adapter.file,
            results.file if isinstance(results, UploadFile) else None,
            summary,
        )
    finally:
        await form.close()


@router.post("/fine-tuning/jobs/{job_id}/end")
def end(job_id: str, body: End, gw: AdminDep) -> FineTuningJob:
    """The trainer stopped working on the job: failed, cancelled (as asked), or interrupted (queued again)."""
    error = body.error.model_dump() if body.error else None
    with gw.sessions() as session:
        job = queue.end(session, job_id, body.run_id, gw.settings.training.lease_s, body.status, error, body.message)
        return jobs.job_object(job)


@router.get("/tenants/{tenant_id}/fine-tuning/jobs")
def tenant_jobs(tenant_id: str, gw: AdminDep, after: str | None = None, limit: int = 20) -> FineTuningJobList:
    with gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
        rows, more = jobs.list_jobs(session, tenant_id, after, min(max(limit, 1), 100), None)
        return FineTuningJobList(data=[jobs.job_object(row) for row in rows], has_more=more)


@router.get("/tenants/{tenant_id}/fine-tuning/jobs/{job_id}")
def tenant_job(tenant_id: str, job_id: str, gw: AdminDep) -> FineTuningJob:
    with gw.sessions() as session:
        return jobs.job_object(jobs.get_job(session, tenant_id, job_id))


@router.post("/tenants/{tenant_id}/fine-tuning/jobs/{job_id}/promote")
async def promote(tenant_id: str, job_id: str, body: PromoteJob, gw: AdminDep) -> VersionOut:
    """The job's model as the next version of a tenant alias, promoted; or, with `promote: false`, staged only, for
    the trainer's evaluation gate to decide."""
    version = await gw.fine_tuning.promote(tenant_id, job_id, body.alias, body.reason, body.promote)
    return VersionOut.of(version, body.alias)


# Multipart plumbing.


async def _form(request: Request, gw: Gateway) -> Any:
    limit = gw.settings.max_adapter_bytes + gw.settings.fine_tuning.max_file_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The upload is larger than {limit} bytes.")
    return await request.form(max_files=2, max_fields=8)


def _file(form: Any, name: str) -> UploadFile:
    upload = form.get(name)
    if not isinstance(upload, UploadFile):
        raise BadRequest(f"Send the file in the multipart field `{name}`.", param=name)
    return upload


def _json(value: Any, name: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value) if isinstance(value, str) else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise BadRequest(f"`{name}` must be a JSON object.", param=name)
    return parsed


def _int(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise BadRequest(f"`{name}` must be a whole number.", param=name)
    return int(value)


def _moment(unix_s: int | None) -> datetime | None:
    return datetime.fromtimestamp(unix_s, UTC) if unix_s is not None else None
