"""A real stack, for the end-to-end tests and the benchmarks: vLLM engines on the tiny model (or SmolLM2), gateway
processes attached to them as they run in production, tenants and adapters."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.child_process import ChildProcess
from gateway.engine.supervisor import engine_environment, vllm_command
from trainer import base_model

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "var" / "test-cache"  # the base models and adapters are made once, then reused by every run
BASE_NAME = base_model.TINY  # the tiny model's public name, as `loraflow up` serves it
ADMIN_KEY = "e2e-admin-key"
HELLO = [{"role": "user", "content": "hello"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


def tiny_model() -> Path:
    """The tiny random-weight model (built in seconds): for tests and benchmarks where speed matters."""
    return Path(base_model.prepare(base_model.TINY, CACHE))


def smollm2_model() -> Path:
    """The default base model, SmolLM2-135M-Instruct: downloaded and converted on first use, then cached."""
    return Path(base_model.prepare(base_model.SMOLLM2, CACHE))


def start_engine(
    model: Path, workdir: Path, threads_bind: str = "auto", served_name: str = BASE_NAME
) -> tuple[ChildProcess, str]:
    port = free_port()
    command = vllm_command(
        model=str(model), served_name=served_name, host="127.0.0.1", port=port, max_lora_rank=16, max_loras=4,
        max_cpu_loras=16, dtype="float32", max_model_len=2048,
    )  # fmt: skip
    env = engine_environment(cpu=True, kv_cache_gib=1, threads_bind=threads_bind)
    env["HF_HUB_OFFLINE"] = "1"  # offline belongs to the tests: the engine never looks for a model on the hub
    process = ChildProcess("engine", command, env, workdir / "engine.log")
    process.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/health", 600)
    return process, url


class GatewayProcess:
    """`loraflow up --engine-url ...` in its own process, as it runs in production."""

    def __init__(self, engine_urls: list[str], workdir: Path, model: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "LORAFLOW_VAR_DIR": str(workdir / "var"),
            "LORAFLOW_PORT": str(self.port),
            "LORAFLOW_ADMIN_KEY": ADMIN_KEY,
            "LORAFLOW_SECRET_KEY": "e2e-secret",
            "LORAFLOW_BASE_MODEL": str(model),
            "LORAFLOW_SERVED_MODEL_NAME": BASE_NAME,
            "LORAFLOW_TRAINING__RUN_SCHEDULER": "false",  # a trainer beside it would only add noise here
            "HF_HUB_OFFLINE": "1",  # for the engines it may start: tests never reach a model hub
            **env,
        }
        command = [str(Path(sys.executable).with_name("loraflow")), "up"]
        for url in engine_urls:
            command += ["--engine-url", url]
        self._log = (workdir / "gateway.log").open("w")
        self.process = subprocess.Popen(command, env=environment, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for(f"{self.url}/ready", 120)
        except BaseException:
            self.stop()  # never leave a gateway process behind a failed start
            raise

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(
            method, f"{self.url}/admin{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120, **kwargs
        )
        response.raise_for_status()
        return response

    def tenant_key(self, tenant: str) -> str:
        self.admin("POST", "/tenants", json={"id": tenant})
        return self.admin("POST", f"/tenants/{tenant}/keys", json={}).json()["key"]

    def adapter(self, tenant: str, alias: str, path: Path) -> str:
        number = self.admin("POST", f"/tenants/{tenant}/adapters/{alias}/versions", json={"path": str(path)}).json()
        self.admin("POST", f"/tenants/{tenant}/adapters/{alias}/promote", json={"version": number["version"]})
        return number["id"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


async def steady_load(gateway: GatewayProcess, key: str, stop: asyncio.Event, log: list[tuple[float, bool]]) -> None:
    """One client asking the `support` alias back to back until `stop`; each request logged as (start, succeeded)."""
    async with httpx.AsyncClient(timeout=60) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = await http.post(
                    f"{gateway.url}/v1/chat/completions",
                    json={"model": "support", "messages": HELLO, "temperature": 0, "max_tokens": 5},
                    headers={"Authorization": f"Bearer {key}"},
                )
                log.append((started, response.status_code == 200))
            except httpx.HTTPError:
                log.append((started, False))
