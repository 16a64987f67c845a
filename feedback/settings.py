"""Settings of the record, nested in the gateway's settings as `record` (`LORAFLOW_RECORD__*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class RecordSettings(BaseModel):
    enabled: bool = Field(
        default=True, description="Record interactions. Off: nothing is written (feedback then finds nothing)."
    )
    batch_size: int = Field(default=1000, ge=1, description="Most rows written in one transaction.")
    flush_interval_s: float = Field(
        default=0.05, ge=0, description="Longest time a row waits in memory for its batch to fill before it is written."
    )
    writer_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling priority (nice) of the writer thread, on Linux: above 0 the thread serving requests "
        "runs first when both want the same core, so a batch being written does not delay a request (the gateway's "
        "p99). Rows that pile up still reach the back-pressure limit, never a silent drop. 0: as the process.",
    )
    max_queue: int = Field(
        default=50_000,
        ge=1,
        description="Rows held in memory, neither written nor spilled. Above it new completions get 503 "
        "(back-pressure) instead of being served unrecorded.",
    )
    spill_dir: Path | None = Field(
        default=None,
        description="Where batches go while the database is unavailable (JSONL, fsync'd), replayed when it is "
        "back and at the next start. None: var/spill.",
    )
    retry_interval_s: float = Field(
        default=1.0, gt=0, description="While spilling, how often the database is tried again (and the spill replayed)."
    )
    write_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest time one batch may wait for the database (a SQLite lock, a PostgreSQL statement) "
        "before it is spilled instead.",
    )
    feedback_max_comment_chars: int = Field(
        default=4000, ge=0, description="Longer feedback comments are refused (400)."
    )
    feedback_max_correction_chars: int = Field(
        default=32_000,
        ge=0,
        description="Longer corrections (the answer that should have been given) are refused (400).",
    )
    token_ttl_s: int = Field(
        default=24 * 3600, gt=0, description="Lifetime of the signed feedback token sent with each completion."
    )
    stats_refresh_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the thumbs-up rate per adapter version is recomputed for /metrics (it scans the "
        "record, so it is never computed per scrape).",
    )
    purge_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often interactions past their tenant's retention period (tenant setting `retention_days`) "
        "are purged. Every replica runs the purge; runs at the same time share the work.",
    )
    lookup_wait_s: float = Field(
        default=2.0,
        ge=0,
        description="How long feedback waits for a just-served interaction to reach the database (it may still "
        "be in a writer's batch, here or on another replica) before answering 404 (503 if this replica still "
        "holds it, queued or spilled).",
    )
