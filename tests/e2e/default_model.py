"""`loraflow up` as a new user runs it (no LORAFLOW_BASE_MODEL: SmolLM2-135M-Instruct), retrieval on, for the
end-to-end group on the real model. One for the whole session: the model's conversion is cached in var/test-cache
and linked into the fresh var dir, so `up` finds it and starts the engine at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai

from tests.e2e.stack import ADMIN_KEY, free_port, smollm2_model, wait_for
from trainer.base_model import SMOLLM2

LOFRAFLOW = str(Path(sys.executable).with_name("loraflow"))


class DefaultModelGateway:
    """The `loraflow up` process, its var dir, and clients for its admin API and its OpenAI API."""

    def __init__(self, workdir: Path, engine_core: str) -> None:
        self.model_dir = smollm2_model()
        self.var_dir = workdir / "var"
        (self.var_dir / "models").mkdir(parents=True)
        (self.var_dir / "models" / SMOLLM2).symlink_to(self.model_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {name: value for name, value in os.environ.items() if not name.startswith("LORAFLOW_")}
        env.update({
            "LORAFLOW_VAR_DIR": str(self.var_dir),
            "LORAFLOW_PORT": str(self.port),
            "LORAFLOW_ADMIN_KEY": ADMIN_KEY,
            "LORAFLOW_SECRET_KEY": "e2e-secret",
            "LORAFLOW_ENGINE__PORT": str(free_port()),
            "LORAFLOW_ENGINE__CPU_THREADS_BIND": engine_core,
            "LORAFLOW_ENGINE__MAX_MODEL_LEN": "2048",
            "LORAFLOW_ENGINE__HEALTH_INTERVAL_S": "0.5",
            "LORAFLOW_RETRIEVAL__ENABLED": "true",
            "LORAFLOW_TRAINING__RUN_SCHEDULER": "false",  # the tests run the cycle themselves
            "LORAFLOW_REGISTRY_POLL_S": "0.5",
            "HF_HUB_OFFLINE": "1",
        })  # fmt: skip
        self.log_path = workdir / "up.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [LOFRAFLOW, "up"], env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir
        )
        try:
            wait_for(f"{self.url}/ready", 600)
        except BaseException:
            self.stop()
            raise

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.var_dir / 'loraflow.db'}"

    @property
    def demo_key(self) -> str:
        return (self.var_dir / "demo-key").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}/admin{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=300, **kwargs
        )

    def tenant(self, tenant_id: str, settings: dict | None = None) -> str:
        """A new tenant (with trainer settings) and an app key for it."""
        body = {"id": tenant_id, **({"settings": settings} if settings else {})}
        assert self.admin("POST", "/tenants", json=body).status_code == 201
        response = self.admin("POST", f"/tenants/{tenant_id}/keys", json={})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=300)

    def stop(self) -> None:
        """Ctrl-C, as a person stops it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
