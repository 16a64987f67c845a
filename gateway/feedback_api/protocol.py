"""Wire types of the feedback API and of the admin API over the record (pydantic; no FastAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from feedback.privacy import Deleted
from feedback.ratings import FeedbackPage, FeedbackRecord
from feedback.stats import AdapterStats, RatingBucket, RequestBucket


class FeedbackCreate(BaseModel):
    """`POST /v1/feedback`. Unknown fields are accepted and ignored, as OpenAI's API does: a widget may send more."""

    model_config = ConfigDict(extra="allow")

    completion_id: str | None = Field(
        None, description="The `id` of the completion being rated. May be left out with a feedback token."
    )
    # Any: the record decides what a rating is ('up'/'down', 1/-1, true/false) and names the field when it is not.
    rating: Any = Field(description="'up' or 'down'; also 1/-1 and true/false.", examples=["up", "down", 1, -1])
    comment: str | None = Field(None, description="Free text from the person rating.")
    correction: str | None = Field(None, description="The answer that should have been given.")
    user: str | None = Field(None, description="The end user rating; one rating per end user and completion.")
    id: str | None = Field(None, description="Idempotency id: the same id again returns the first record.")


class Feedback(BaseModel):
    id: str
    object: Literal["feedback"] = "feedback"
    completion_id: str
    rating: Literal["up", "down"]
    comment: str | None
    correction: str | None
    user: str | None
    idempotency_id: str | None
    adapter_version: str | None = Field(description="The version that served the rated completion; null: base.")
    created_at: int
    updated_at: int

    @classmethod
    def of(cls, record: FeedbackRecord) -> Feedback:
        return cls.model_validate(record.to_json())


class FeedbackList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Feedback]
    has_more: bool
    next_cursor: str | None = Field(description="Pass it as `cursor` for the next page; null on the last one.")

    @classmethod
    def of(cls, page: FeedbackPage) -> FeedbackList:
        return cls(
            data=[Feedback.of(record) for record in page.items],
            has_more=page.next_cursor is not None,
            next_cursor=page.next_cursor,
        )


class VersionStats(BaseModel):
    model: str = Field(description="What was served: `support@2`, or the base model's name.")
    adapter_version: str | None = Field(description="null: the base model.")
    interactions: int
    ratings: int
    up: int
    down: int
    up_rate: float | None = Field(description="Thumbs-up share of the ratings; null without ratings.")
    up_rate_low: float | None = Field(description="Wilson 95% interval of up_rate, lower bound.")
    up_rate_high: float | None = Field(description="Wilson 95% interval of up_rate, upper bound.")

    @classmethod
    def of(cls, stats: AdapterStats, base_model: str) -> VersionStats:
        data = stats.to_json()
        del data["tenant_id"]
        return cls(model=stats.adapter_version or base_model, **data)


class TenantStats(BaseModel):
    object: Literal["list"] = "list"
    tenant_id: str
    confidence: float = 0.95
    data: list[VersionStats]


class Forgotten(BaseModel):
    """What `DELETE /admin/tenants/{tenant}/users/{user}` deleted."""

    tenant_id: str
    user: str
    interactions: int
    feedback: int

    @classmethod
    def of(cls, tenant_id: str, user: str, deleted: Deleted) -> Forgotten:
        return cls(tenant_id=tenant_id, user=user, interactions=deleted.interactions, feedback=deleted.feedback)


# Over time (what the console draws), for scripts and dashboards of one's own.


class RatingBucketOut(BaseModel):
    model: str = Field(description="What was served: `support@2`, or the base model's name.")
    start: datetime = Field(description="The bucket's first instant (UTC).")
    ratings: int
    up: int
    up_rate: float | None
    up_rate_low: float | None = Field(description="Wilson 95% interval of up_rate, lower bound.")
    up_rate_high: float | None

    @classmethod
    def of(cls, bucket: RatingBucket, base_model: str) -> RatingBucketOut:
        low, high = bucket.interval or (None, None)
        return cls(model=bucket.adapter_version or base_model, start=bucket.start, ratings=bucket.ratings,
                   up=bucket.up, up_rate=bucket.up_rate, up_rate_low=low, up_rate_high=high)  # fmt: skip


class RequestBucketOut(BaseModel):
    alias: str | None = Field(description="The alias that served them; null: the base model asked for by name.")
    start: datetime
    requests: int
    tokens: int

    @classmethod
    def of(cls, bucket: RequestBucket) -> RequestBucketOut:
        return cls(alias=bucket.alias, start=bucket.start, requests=bucket.requests, tokens=bucket.tokens)


class Series(BaseModel):
    object: Literal["list"] = "list"
    tenant_id: str
    bucket_s: int
    data: list[RatingBucketOut] | list[RequestBucketOut]
