"""Routes of the feedback API (`router`, under /v1) and of the admin API over the record (`admin_router`).

Database-only routes are plain functions (FastAPI runs them in its thread pool); the others are async and keep
their database work in worker threads (service.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from feedback.keyset import MAX_PAGE
from feedback.models import MAX_END_USER_CHARS, MAX_ID_CHARS
from feedback.ratings import list_feedback
from feedback.stats import adapter_stats, rating_series, request_series
from gateway import tenants
from gateway.deps import AdminDep, CallerDep, GatewayDep
from gateway.feedback_api import service
from gateway.feedback_api.auth import RaterDep
from gateway.feedback_api.protocol import (
    Feedback,
    FeedbackCreate,
    FeedbackList,
    Forgotten,
    RatingBucketOut,
    RequestBucketOut,
    Series,
    TenantStats,
    VersionStats,
)
from gateway.request_body import read_json
from gateway.state import Gateway

router = APIRouter(prefix="/v1")
admin_router = APIRouter(prefix="/admin")

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Most records per page.")]
Since = Annotated[datetime | None, Query(description="ISO 8601 (UTC when no zone is given), inclusive.")]
Until = Annotated[datetime | None, Query(description="ISO 8601 (UTC when no zone is given), exclusive.")]


@router.post("/feedback", status_code=201)
async def create_feedback(request: Request, rater: RaterDep, gw: GatewayDep) -> Feedback:
    """Rate a completion, with the tenant's API key or the completion's feedback token."""
    limits = gw.settings.record
    # Room for the longest fields the record accepts, each escaped as \uXXXX at worst, and the JSON around them.
    max_bytes = 65536 + 6 * (
        limits.feedback_max_comment_chars + limits.feedback_max_correction_chars + MAX_END_USER_CHARS + 2 * MAX_ID_CHARS
    )
    body, _ = await read_json(request, FeedbackCreate, max_bytes)
    return Feedback.of(await service.rate(gw, rater, body))


@router.get("/feedback")
def list_own_feedback(
    caller: CallerDep, gw: GatewayDep, completion_id: str | None = None, limit: Limit = 100, cursor: str | None = None
) -> FeedbackList:
    """The caller's tenant's ratings, newest first; of one completion with `completion_id`."""
    with service.database_errors(gw):
        page = list_feedback(gw.db, tenant_id=caller.tenant_id, completion_id=completion_id, limit=limit, cursor=cursor)
    return FeedbackList.of(page)


@admin_router.get("/tenants/{tenant_id}/feedback")
def list_tenant_feedback(
    tenant_id: str,
    gw: AdminDep,
    adapter: Annotated[str | None, Query(description="A version (`support@2`) or an alias (all versions).")] = None,
    rating: Annotated[str | None, Query(description="up or down.")] = None,
    user: Annotated[str | None, Query(description="The end user who rated.")] = None,
    completion_id: str | None = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> FeedbackList:
    """A tenant's ratings, newest first, filtered; `since`/`until` bound when a rating was first given."""
    _tenant_exists(gw, tenant_id)
    with service.database_errors(gw):
        page = list_feedback(
            gw.db, tenant_id=tenant_id, completion_id=completion_id, adapter=adapter, rating=rating, end_user=user,
            since=since, until=until, limit=limit, cursor=cursor,
        )  # fmt: skip
    return FeedbackList.of(page)


@admin_router.get("/tenants/{tenant_id}/feedback/export")
async def export_feedback(
    tenant_id: str,
    gw: AdminDep,
    format: Literal["chat", "kto"] = "chat",
    since: Since = None,
    until: Until = None,
    adapter: Annotated[str | None, Query(description="A version (`support@2`) or an alias (all versions).")] = None,
    with_ids: Annotated[bool, Query(description="Add completion_id and adapter_version to each line.")] = False,
) -> StreamingResponse:
    """The tenant's rated interactions as JSONL, streamed: OpenAI chat fine-tuning format, or TRL's KTO format.
    `since`/`until` bound when the interaction was served. The header `x-loraflow-export-ratings` says how many
    ratings the export reads (the total for a progress bar; lines written can be fewer, or more with kto)."""
    await run_in_threadpool(_tenant_exists, gw, tenant_id)
    return await service.export_response(
        gw, tenant_id, format=format, since=since, until=until, adapter=adapter, with_ids=with_ids
    )


@admin_router.get("/tenants/{tenant_id}/stats")
def tenant_stats(tenant_id: str, gw: AdminDep, since: Since = None, until: Until = None) -> TenantStats:
    """Per adapter version: interactions, ratings, thumbs-up rate and its Wilson 95% interval. Read fresh from the
    database (the cached copy is for Prometheus)."""
    _tenant_exists(gw, tenant_id)
    with service.database_errors(gw):
        stats = adapter_stats(gw.db, tenant_id, since=since, until=until)
    base = gw.settings.public_model_name
    return TenantStats(tenant_id=tenant_id, data=[VersionStats.of(entry, base) for entry in stats])


BucketS = Annotated[int, Query(ge=60, le=31 * 86400, description="Bucket length in seconds (3600: hourly).")]


@admin_router.get("/tenants/{tenant_id}/stats/ratings")
def ratings_over_time(
    tenant_id: str,
    gw: AdminDep,
    since: Annotated[datetime, Query(description="ISO 8601 (UTC when no zone is given), inclusive.")],
    until: Until = None,
    bucket_s: BucketS = 86400,
    alias: Annotated[str | None, Query(description="Only this alias's versions.")] = None,
) -> Series:
    """Ratings and thumbs-up rate (Wilson 95% interval) per adapter version per bucket, by when a rating was first
    given: the console's 👍-rate-over-time plot."""
    _tenant_exists(gw, tenant_id)
    with service.database_errors(gw):
        found = rating_series(gw.db, tenant_id, since=since, until=until, bucket_s=bucket_s, alias=alias)
    base = gw.settings.public_model_name
    return Series(tenant_id=tenant_id, bucket_s=bucket_s, data=[RatingBucketOut.of(b, base) for b in found])


@admin_router.get("/tenants/{tenant_id}/stats/requests")
def requests_over_time(
    tenant_id: str,
    gw: AdminDep,
    since: Annotated[datetime, Query(description="ISO 8601 (UTC when no zone is given), inclusive.")],
    until: Until = None,
    bucket_s: BucketS = 3600,
) -> Series:
    """Requests and tokens per alias per bucket: the console's requests-per-hour plot."""
    _tenant_exists(gw, tenant_id)
    with service.database_errors(gw):
        found = request_series(gw.db, tenant_id, since=since, until=until, bucket_s=bucket_s)
    return Series(tenant_id=tenant_id, bucket_s=bucket_s, data=[RequestBucketOut.of(b) for b in found])


@admin_router.delete("/tenants/{tenant_id}/users/{user:path}")
async def forget_user(tenant_id: str, user: str, gw: AdminDep) -> Forgotten:
    """Delete everything recorded for one end user of a tenant (interactions, and ratings of and by them)."""
    await run_in_threadpool(_tenant_exists, gw, tenant_id)
    return Forgotten.of(tenant_id, user, await service.forget(gw, tenant_id, user))


def _tenant_exists(gw: Gateway, tenant_id: str) -> None:
    with service.database_errors(gw), gw.sessions() as session:
        tenants.get_tenant(session, tenant_id)
