"""Wire types of the training API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.store.models import TrainingRun


class RunStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(min_length=1, max_length=64, description="The adapter alias to retrain.")
    trigger: Literal["schedule", "manual"] = "manual"
    runner: str = Field("", max_length=200, description="Who runs it (host:pid), for people reading the list.")


class Progress(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    elapsed_s: float | None = None
    loss_curve: list[tuple[int, float]] | None = Field(
        None, max_length=1000, description="(step, training loss) so far, thinned by the trainer: the live loss plot."
    )


class RunUpdate(BaseModel):
    """A trainer's update; every one is also a heartbeat. Absent fields are left as they are."""

    model_config = ConfigDict(extra="forbid")

    stage: str | None = Field(None, max_length=32)
    progress: Progress | None = None
    candidate: str | None = Field(None, max_length=100)
    status: Literal["running", "promoted", "rejected", "skipped", "failed", "held", "canary"] | None = None
    reason: str | None = Field(None, max_length=2000)
    report: dict[str, Any] | None = None
    report_markdown: str | None = None


class RunReview(BaseModel):
    """A person's verdict on a run held for review."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=1000, description="Why, for the record.")


class RunSummary(BaseModel):
    id: str
    tenant_id: str
    adapter: str
    trigger: str
    runner: str
    status: str
    stage: str
    progress: dict[str, Any]
    candidate: str | None
    reason: str
    created_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: TrainingRun) -> RunSummary:
        return cls(**{name: getattr(run, name) for name in cls.model_fields})


class RunOut(RunSummary):
    report: dict[str, Any]
    report_markdown: str

    @classmethod
    def of(cls, run: TrainingRun) -> RunOut:
        return cls(**{name: getattr(run, name) for name in cls.model_fields})
