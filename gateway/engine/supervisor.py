"""How to run vLLM's OpenAI server as the gateway's child (a `ChildProcess`): its command line and environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def vllm_command(
    *,
    model: str,
    served_name: str,
    host: str,
    port: int,
    max_lora_rank: int,
    max_loras: int,
    max_cpu_loras: int,
    dtype: str,
    max_model_len: int | None = None,
    extra_args: list[str] | None = None,
    python: str = sys.executable,
) -> list[str]:
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model,
        "--served-model-name", served_name,
        "--host", host,
        "--port", str(port),
        "--enable-lora",
        "--max-lora-rank", str(max_lora_rank),
        "--max-loras", str(max_loras),
        "--max-cpu-loras", str(max_cpu_loras),
        "--dtype", dtype,
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    return command + list(extra_args or [])


def engine_environment(*, cpu: bool, kv_cache_gib: int, threads_bind: str) -> dict[str, str]:
    env = dict(os.environ)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # the gateway loads and unloads adapters at runtime
    if cpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
        env["VLLM_CPU_OMP_THREADS_BIND"] = threads_bind
    return env


def cuda_available() -> bool:
    """Whether this machine has an NVIDIA GPU, without importing torch."""
    return Path("/dev/nvidiactl").exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))
