"""The trainer's own settings: one pydantic-settings class read from `LORAFLOW_*` variables, `.env` and mounted secrets.

The trainer shares the variable names with the gateway where they mean the same thing (`LORAFLOW_DATABASE_URL`,
`LORAFLOW_VAR_DIR`, `LORAFLOW_BASE_MODEL`, `LORAFLOW_ENGINE__MAX_LORA_RANK`, ...), so one environment configures
both, but it never imports the gateway's settings (DESIGN.md). Nothing is read at import time: call
`load_settings()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trainer import base_model as base_models
from trainer.config import DEFAULT_TARGET_MODULES


class EngineLimits(BaseModel):
    """What the engine can serve, read from the same variables the gateway passes to vLLM."""

    model_config = ConfigDict(extra="ignore")  # the gateway's other engine settings share the prefix

    max_lora_rank: int = Field(default=16, description="vLLM --max-lora-rank (`LORAFLOW_ENGINE__MAX_LORA_RANK`).")
    lora_target_modules: list[str] = Field(
        default=list(DEFAULT_TARGET_MODULES),
        description="Module names the engine can apply LoRA to (`LORAFLOW_ENGINE__LORA_TARGET_MODULES`).",
    )


class SchedulerSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sync_interval_s: float = Field(
        default=60.0, gt=0, description="How often the jobs are re-synced from tenant settings."
    )
    misfire_grace_s: int = Field(
        default=6 * 3600,
        ge=1,
        description="A run that could not start on time (scheduler down, another run still training) still starts "
        "if it is at most this late; several missed runs of one job are coalesced into one.",
    )
    table: str = Field(default="trainer_schedule", description="The job store's table in the database.")
    fine_tuning_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the scheduler asks the gateway for a queued fine-tuning job to run (one at a time).",
    )


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LORAFLOW_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    env: Literal["development", "production"] = Field(
        default="development", description="production refuses to run without LORAFLOW_ADMIN_KEY."
    )
    gateway_url: str = Field(
        default="", description="The gateway the trainer talks to (`LORAFLOW_GATEWAY_URL`); empty: the local one."
    )
    host: str = Field(default="127.0.0.1", description="The local gateway's address, when gateway_url is empty.")
    port: int = Field(default=8000, description="The local gateway's port, when gateway_url is empty.")
    admin_key: SecretStr | None = Field(
        default=None, description="Bearer key for the admin API. Development: read from var/admin-key."
    )
    database_url: str = Field(
        default="", description="SQLAlchemy URL of the record; empty: SQLite file var/loraflow.db."
    )
    var_dir: Path = Field(default=Path("var"), description="Where the trainer keeps its work: var/trainer/.")
    base_model: str = Field(
        default=base_models.SMOLLM2,
        description="The base model to train on, as the gateway serves it (`LORAFLOW_BASE_MODEL`): a built-in name "
        f"('{base_models.SMOLLM2}', '{base_models.TINY}'), a .gguf file, a Hugging Face id or a directory.",
    )
    served_model_name: str = Field(
        default="", description="The base model's public name at the gateway (`LORAFLOW_SERVED_MODEL_NAME`)."
    )
    engine: EngineLimits = EngineLimits()
    scheduler: SchedulerSettings = SchedulerSettings()

    heartbeat_s: float = Field(
        default=10.0, gt=0, le=20, description="How often a running run tells the gateway it is alive."
    )
    progress_interval_s: float = Field(default=3.0, ge=0, description="Training progress is sent at most this often.")
    http_timeout_s: float = Field(
        default=300.0, gt=0, description="Timeout of one admin API call (uploads, promotions)."
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> TrainerSettings:
        if self.env == "production" and self.admin_key is None:
            raise ValueError("LORAFLOW_ENV=production needs LORAFLOW_ADMIN_KEY")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'loraflow.db'}"

    @property
    def url(self) -> str:
        if self.gateway_url:
            return self.gateway_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_model_path(self) -> str:
        """What training loads: the directory made for a built-in name or a GGUF file (as the gateway's), else
        base_model as given."""
        return base_models.model_path(self.base_model, self.var_dir)

    @property
    def public_model_name(self) -> str:
        """The name the gateway serves the base model under, unless `LORAFLOW_SERVED_MODEL_NAME` says otherwise."""
        return self.served_model_name or base_models.public_name(self.base_model)

    @property
    def work_dir(self) -> Path:
        return self.var_dir / "trainer"

    def admin_secret(self) -> str:
        """The admin key; in development the one `loraflow up` made in var/admin-key."""
        if self.admin_key is not None:
            return self.admin_key.get_secret_value()
        dev_key = self.var_dir / "admin-key"
        if self.env == "development" and dev_key.is_file():
            return dev_key.read_text().strip()
        raise RuntimeError("no admin key: set LORAFLOW_ADMIN_KEY (or run `loraflow up` once to make a development key)")


def load_settings(**overrides: Any) -> TrainerSettings:
    """Read the settings now. Secrets mounted as files (Docker/Kubernetes) are read from LORAFLOW_SECRETS_DIR."""
    secrets_dir = os.environ.get("LORAFLOW_SECRETS_DIR")
    if secrets_dir:
        return TrainerSettings(_secrets_dir=secrets_dir, **overrides)
    return TrainerSettings(**overrides)
