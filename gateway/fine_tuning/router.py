"""Routes of OpenAI's files and fine-tuning APIs, with the tenant's API key. Database-only routes are plain functions
(FastAPI runs them in its thread pool); the work is in `FineTuning` (service.py) and the store modules."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from gateway.deps import CallerDep, GatewayDep
from gateway.errors import BadRequest
from gateway.fine_tuning import files, jobs
from gateway.fine_tuning.protocol import (
    FileDeleted,
    FileList,
    FileObject,
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobEventList,
    FineTuningJobList,
)

router = APIRouter(prefix="/v1")


# Files. Their optional fields are left out when empty, as OpenAI's (`expires_at` is an integer when present).


@router.post("/files", response_model_exclude_none=True)
async def create_file(request: Request, caller: CallerDep, gw: GatewayDep) -> FileObject:
    return await gw.fine_tuning.upload(request, caller)


@router.get("/files", response_model_exclude_none=True)
def list_files(
    caller: CallerDep,
    gw: GatewayDep,
    purpose: str | None = None,
    limit: int = Query(10_000, ge=1, le=10_000),
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    with gw.sessions() as session:
        rows, more = files.list_files(session, caller.tenant_id, purpose, limit, after, order)
        data = [files.file_object(row) for row in rows]
    return FileList(data=data, first_id=_first(data), last_id=_last(data), has_more=more)


@router.get("/files/{file_id}", response_model_exclude_none=True)
def retrieve_file(file_id: str, caller: CallerDep, gw: GatewayDep) -> FileObject:
    with gw.sessions() as session:
        return files.file_object(files.get_file(session, caller.tenant_id, file_id))


@router.delete("/files/{file_id}")
def delete_file(file_id: str, caller: CallerDep, gw: GatewayDep) -> FileDeleted:
    gw.fine_tuning.delete(caller.tenant_id, file_id)
    return FileDeleted(id=file_id)


@router.get("/files/{file_id}/content")
def file_content(file_id: str, caller: CallerDep, gw: GatewayDep) -> StreamingResponse:
    return StreamingResponse(gw.fine_tuning.content(caller.tenant_id, file_id), media_type="application/octet-stream")


# Fine-tuning jobs.


@router.post("/fine_tuning/jobs")
async def create_job(request: Request, caller: CallerDep, gw: GatewayDep) -> FineTuningJob:
    return await gw.fine_tuning.create_job(request, caller)


@router.get("/fine_tuning/jobs")
def list_jobs(
    request: Request, caller: CallerDep, gw: GatewayDep, after: str | None = None, limit: int = Query(20, ge=1, le=100)
) -> FineTuningJobList:
    with gw.sessions() as session:
        rows, more = jobs.list_jobs(session, caller.tenant_id, after, limit, _metadata_filter(request))
        return FineTuningJobList(data=[jobs.job_object(row) for row in rows], has_more=more)


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}")
def retrieve_job(fine_tuning_job_id: str, caller: CallerDep, gw: GatewayDep) -> FineTuningJob:
    with gw.sessions() as session:
        return jobs.job_object(jobs.get_job(session, caller.tenant_id, fine_tuning_job_id))


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/cancel")
def cancel_job(fine_tuning_job_id: str, caller: CallerDep, gw: GatewayDep) -> FineTuningJob:
    with gw.sessions() as session:
        return jobs.job_object(jobs.cancel(session, caller.tenant_id, fine_tuning_job_id))


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}/events", response_model_exclude_none=True)
def list_events(
    fine_tuning_job_id: str,
    caller: CallerDep,
    gw: GatewayDep,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=1000),
) -> FineTuningJobEventList:
    with gw.sessions() as session:
        job = jobs.get_job(session, caller.tenant_id, fine_tuning_job_id)
        rows, more = jobs.list_events(session, job, after, limit)
        return FineTuningJobEventList(data=[jobs.event_object(row) for row in rows], has_more=more)


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", response_model_exclude_none=True)
def list_checkpoints(
    fine_tuning_job_id: str,
    caller: CallerDep,
    gw: GatewayDep,
    after: str | None = None,
    limit: int = Query(10, ge=1, le=100),
) -> FineTuningJobCheckpointList:
    with gw.sessions() as session:
        job = jobs.get_job(session, caller.tenant_id, fine_tuning_job_id)
        rows, more = jobs.list_checkpoints(session, job, after, limit)
        data = [jobs.checkpoint_object(row) for row in rows]
    return FineTuningJobCheckpointList(data=data, first_id=_first(data), last_id=_last(data), has_more=more)


def _metadata_filter(request: Request) -> dict[str, str] | None:
    """OpenAI's `metadata[key]=value` query parameters (all must match), or `metadata=null` (jobs without any)."""
    wanted: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key == "metadata":
            if value != "null":
                raise BadRequest("Filter by metadata with `metadata[key]=value`, or `metadata=null`.", param="metadata")
            return {}
        if key.startswith("metadata[") and key.endswith("]"):
            wanted[key[len("metadata[") : -1]] = value
    return wanted or None


def _first(data: list) -> str | None:
    return data[0].id if data else None


def _last(data: list) -> str | None:
    return data[-1].id if data else None
