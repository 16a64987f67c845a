"""The demos' own gateway: `loraflow up` in a child process on free ports, in a fresh var dir, on the default model.

The converted base model is kept in `var/models` (where `make run` keeps it) and linked into the demo's var dir, so
neither a demo nor `make run` converts it twice.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from trainer import base_model
from trainer.preparation import RichStages

BASE_MODEL = base_model.SMOLLM2


class DemoGateway:
    def __init__(self, process: subprocess.Popen, url: str, admin_key: str, log_path: Path) -> None:
        self.process, self.url, self.admin_key, self.log_path = process, url, admin_key, log_path

    @classmethod
    def start(cls, var_dir: Path, console: Console, *, retrieval: bool = False, timeout_s: float = 600) -> DemoGateway:
        _fresh(var_dir)
        _link_base_model(var_dir, console)
        port, admin_key = _free_port(), "lf_admin_demo_" + secrets.token_urlsafe(16)
        env = {
            **os.environ,
            "LORAFLOW_VAR_DIR": str(var_dir),
            "LORAFLOW_PORT": str(port),
            "LORAFLOW_HOST": "127.0.0.1",
            "LORAFLOW_ADMIN_KEY": admin_key,
            "LORAFLOW_DATABASE_URL": "",  # its own SQLite file, whatever this shell points at
            "LORAFLOW_BASE_MODEL": BASE_MODEL,
            "LORAFLOW_SERVED_MODEL_NAME": "",
            "LORAFLOW_ENGINE__URLS": "[]",
            "LORAFLOW_ENGINE__PORT": str(_free_port()),
            # Every core for the engine: the demo's phases take turns (users, training, evaluation), and an idle CPU
            # engine leaves its cores alone (training ran as fast beside it). Serving on 2 cores instead of 1: 1.3-1.6x.
            "LORAFLOW_ENGINE__CPU_THREADS_BIND": f"0-{max((os.cpu_count() or 1) - 1, 0)}",
            "LORAFLOW_ENGINE__MAX_MODEL_LEN": "2048",
            "LORAFLOW_RETRIEVAL__ENABLED": "true" if retrieval else "false",
            "LORAFLOW_TRAINING__RUN_SCHEDULER": "false",  # the demo triggers the nightly job itself
            "TOKENIZERS_PARALLELISM": "false",
        }
        log_path = var_dir / "logs" / "up.log"
        command = [str(Path(sys.executable).with_name("loraflow")), "up"]
        with log_path.open("w") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        gateway = cls(process, f"http://127.0.0.1:{port}", admin_key, log_path)
        began = time.perf_counter()
        with console.status("") as status:
            while time.perf_counter() - began < timeout_s:
                status.update(f"Starting the gateway and vLLM (log: {log_path})… {time.perf_counter() - began:.0f} s")
                if process.poll() is not None:
                    raise RuntimeError(f"`loraflow up` exited ({process.returncode}); its log:\n{_tail(log_path)}")
                try:
                    if httpx.get(f"{gateway.url}/ready", timeout=2).status_code == 200:
                        return gateway
                except httpx.HTTPError:
                    pass
                time.sleep(1)
        gateway.stop()
        raise TimeoutError(f"the gateway was not ready after {timeout_s:.0f} s; its log:\n{_tail(log_path)}")

    def finish(self, *, keep: bool, console: Console) -> None:
        """The end of a demo: stopped, or left running (`--keep`) with where to find it."""
        if keep:
            console.print(f"[dim]gateway left running at {self.url} (pid {self.process.pid})[/]")
        else:
            self.stop()

    def stop(self) -> None:
        """Ctrl-C, as a person would: the gateway stops its engine, and nothing is left running."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _fresh(var_dir: Path) -> None:
    if var_dir.exists():
        for child in var_dir.iterdir():
            if child.name != "models":
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (var_dir / "logs").mkdir(parents=True, exist_ok=True)


def _link_base_model(var_dir: Path, console: Console) -> None:
    """The base model converted once into var/models (with its progress shown), linked into the demo's var dir."""
    with RichStages(console) as stages:
        shared = Path(base_model.prepare(BASE_MODEL, var_dir.parent, stages))
    link = Path(base_model.model_path(BASE_MODEL, var_dir))
    if link.resolve() == shared.resolve():
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(shared.resolve())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
