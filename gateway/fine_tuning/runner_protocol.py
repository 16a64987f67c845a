"""Wire types of the admin routes through which the trainer works the job queue (trainer/fine_tuning.py is the
other side), and of promoting a job's model to an alias."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.fine_tuning.protocol import JobError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Claim(_Strict):
    runner: str = Field("", max_length=200, description="Who claims (host:pid), for people reading the runs list.")


class ParentVersion(BaseModel):
    alias: str
    version: int
    name: str = Field(description="`support@3`")


class CheckpointRef(BaseModel):
    id: str
    step_number: int
    metrics: dict[str, Any]


class ClaimedJob(BaseModel):
    """Everything the trainer needs to run a job it claimed."""

    id: str
    tenant_id: str
    run_id: str = Field(description="The training run that holds the tenant's lock: named in every report.")
    attempt: int
    base_model: str = Field(description="The base model's public name.")
    model: str = Field(description="What the job was asked to fine-tune, as given.")
    parent: ParentVersion | None = Field(description="The adapter version to continue; None: a new adapter.")
    training_file: str
    validation_file: str | None
    method: dict[str, Any]
    seed: int
    fine_tuned_model: str = Field(description="The name the model will have; checkpoints add `:ckpt-step-N`.")
    resume_from: CheckpointRef | None = Field(description="The last checkpoint of an earlier attempt.")
    data: dict[str, Any] = Field(description="What validation found: format and example counts per file.")


class EventIn(_Strict):
    level: Literal["info", "warn", "error"] = "info"
    message: str = Field(max_length=2000)
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class Report(_Strict):
    """Progress of a claimed job; every report is also the run's heartbeat."""

    run_id: str
    events: list[EventIn] = Field(default_factory=list, max_length=100)
    progress: dict[str, Any] | None = None
    method: dict[str, Any] | None = Field(None, description='`method` with "auto" resolved into the values used.')
    estimated_finish: int | None = Field(None, description="Unix time training should end.")


class Reported(BaseModel):
    status: str = Field(description="The job's status: `cancelled` means stop at the next step.")


class End(_Strict):
    run_id: str
    status: Literal["failed", "cancelled", "interrupted"]
    error: JobError | None = None
    message: str = Field("", max_length=2000)


class PromoteJob(_Strict):
    alias: str = Field(min_length=1, max_length=64, description="The tenant alias to serve the job's model.")
    reason: str = Field("", max_length=1000)
    promote: bool = Field(
        True,
        description="False: register and stage it as the alias's next version only, for the trainer's evaluation "
        "gate (`loraflow fine-tuning promote --gate`) to decide.",
    )
