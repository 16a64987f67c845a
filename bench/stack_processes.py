"""The processes of the overhead benchmark: the fake upstream and `loraflow up` gateways, each pinned to its cores,
and their CPU time as the kernel accounts it (the process and its children: a gateway's workers)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key"
BASE_NAME = "tiny-random"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process behind {url} exited; see its log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


def synthetic_model(workdir: Path) -> tuple[Path, Path]:
    """(a base model directory, a LoRA adapter for it): just what the gateway reads of them, the config and the
    adapter's tensor shapes. The fake engine never loads weights, so none are made: no torch, no download."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4, "vocab_size": 256}  # fmt: skip
    model = workdir / "base-model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(json.dumps(config))
    adapter = workdir / "adapter"
    adapter.mkdir(exist_ok=True)
    rank = 8
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": str(model), "r": rank, "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM",
    }))  # fmt: skip
    header: dict[str, object] = {}
    offset = 0
    for layer in range(2):
        for module in ("q_proj", "v_proj"):
            for which, shape in (("A", [rank, 64]), ("B", [64, rank])):
                size = shape[0] * shape[1] * 4
                name = f"base_model.model.model.layers.{layer}.self_attn.{module}.lora_{which}.weight"
                header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
                offset += size
    encoded = json.dumps(header).encode()
    (adapter / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(offset))
    return model, adapter


class Pinned:
    """A child process pinned to `cores` (taskset), in its own process group so it is stopped with its children."""

    def __init__(self, name: str, command: list[str], cores: str, log: Path, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self._log = log.open("w")
        prefix = ["taskset", "-c", cores] if cores else []
        self.process = subprocess.Popen(
            prefix + command, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._ps = psutil.Process(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its living children, from the kernel's accounting."""
        total = 0.0
        for process in [self._ps, *self._ps.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Upstream(Pinned):
    def __init__(self, workdir: Path, cores: str, token_interval_ms: float, chunks: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "bench.fake_upstream", "--port", str(self.port),
                   "--token-interval-ms", str(token_interval_ms), "--chunks", str(chunks)]  # fmt: skip
        super().__init__("upstream", command, cores, workdir / "upstream.log", dict(os.environ), ROOT)
        wait_for(f"{self.url}/health", 30)

    def engine_names(self) -> list[str]:
        return [m["id"] for m in httpx.get(f"{self.url}/v1/models").json()["data"] if m.get("parent")]


class Gateway(Pinned):
    """`loraflow up --engine-url <upstream>` (record on, SQLite), as it runs in production.

    `source`: run the gateway's code from another checkout (a `git archive` of an earlier commit), for a before/after
    from the same benchmark."""

    def __init__(
        self,
        upstream: Upstream,
        workdir: Path,
        model: Path,
        cores: str,
        *,
        workers: int = 1,
        source: Path | None = None,
        name: str = "gateway",
        wrapper: list[str] | None = None,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "LORAFLOW_VAR_DIR": str(workdir / "var"),
            "LORAFLOW_ADMIN_KEY": ADMIN_KEY,
            "LORAFLOW_SECRET_KEY": "bench-secret",
            "LORAFLOW_BASE_MODEL": str(model),
            "LORAFLOW_SERVED_MODEL_NAME": BASE_NAME,
            "LORAFLOW_TRAINING__RUN_SCHEDULER": "false",  # no trainer beside it: only the gateway is measured
            **env,
        }
        if source is not None:
            environment["PYTHONPATH"] = str(source)
        # BENCH_GATEWAY_PYTHON_ARGS: options for the gateway's interpreter, e.g. "-m cProfile -o /tmp/gateway.prof"
        python = [sys.executable, *os.environ.get("BENCH_GATEWAY_PYTHON_ARGS", "").split()]
        command = [*(wrapper or []), *python, "-m", "gateway.cli", "up", "--engine-url", upstream.url]
        command += ["--port", str(self.port)]
        if workers != 1:
            command += ["--workers", str(workers)]
        # cwd is the work directory: `python -m` puts the cwd first on sys.path, ahead of PYTHONPATH.
        super().__init__(name, command, cores, workdir / f"{name}.log", environment, workdir)
        try:
            wait_for(f"{self.url}/ready", 600, alive=lambda: self.process.poll() is None)
        except BaseException:
            self.stop()
            raise

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(
            method, f"{self.url}/admin{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=300, **kwargs
        )
        response.raise_for_status()
        return response

    def idle_cpu_per_s(self, seconds: float = 3.0) -> float:
        """CPU seconds a second while no request comes (health checks, registry poll, stats refresh)."""
        before, started = self.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        return (self.cpu_seconds() - before) / (time.perf_counter() - started)
