"""Settings of the fine-tuning API (`LORAFLOW_FINE_TUNING__*`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FineTuningSettings(BaseModel):
    """Uploaded files and fine-tuning jobs."""

    max_file_bytes: int = Field(
        512 * 1024 * 1024, gt=0, description="Largest file `POST /v1/files` accepts (413 above), as OpenAI's 512 MB."
    )
    max_running_jobs: int = Field(
        1, ge=1, description="Jobs training at once, all tenants together; the others wait `queued`."
    )
    min_examples: int = Field(10, ge=1, description="A training file needs at least this many examples (OpenAI: 10).")
    max_attempts: int = Field(
        3,
        ge=1,
        description="A job whose trainer was lost (killed, machine gone) is queued again, to resume from its last "
        "checkpoint, at most this many times in all; then it fails.",
    )
    expire_interval_s: float = Field(
        5.0, gt=0, description="How often a gateway looks for jobs whose trainer stopped sending heartbeats."
    )
