"""A gateway on a fake engine, for fast tests of the gateway's own logic (the real engine is in tests/e2e)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file

from gateway.app import create_app
from gateway.settings import EngineSettings, Settings
from tests.fake_engine import FakeEngine

ADMIN_KEY = "test-admin-key"
BASE = "tiny-random"  # the fake engine serves it under this name, as the tiny model is served


@dataclass
class Env:
    client: TestClient
    engine: FakeEngine
    settings: Settings

    def admin(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", **(headers or {})}
        return self.client.request(method, f"/admin{path}", headers=headers, **kwargs)

    def tenant_with_key(self, tenant: str, **key_options) -> str:
        assert self.admin("POST", "/tenants", json={"id": tenant}).status_code in (201, 409)
        response = self.admin("POST", f"/tenants/{tenant}/keys", json={"name": "test", **key_options})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    def register(self, tenant: str, alias: str, path: Path) -> httpx.Response:
        return self.admin("POST", f"/tenants/{tenant}/adapters/{alias}/versions", json={"path": str(path)})

    def wait_ready(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, self.client.get("/ready").json()
            time.sleep(0.02)


def make_settings(tmp_path: Path, database_url: str = "", **overrides) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        admin_key=ADMIN_KEY,
        secret_key="test-secret",
        engine=EngineSettings(urls=["http://engine-a"], health_interval_s=0.05),
        registry_poll_s=0.05,
        **{"base_model": BASE, **overrides},
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    engine = FakeEngine(BASE)
    settings = make_settings(tmp_path)
    app = create_app(settings, transport=httpx.ASGITransport(engine.app))
    with TestClient(app) as client:
        e = Env(client, engine, settings)
        e.wait_ready()
        yield e


def fake_adapter(path: Path, *, rank: int = 8, targets=("q_proj", "v_proj"), base: str = BASE, **config) -> Path:
    """A PEFT-shaped LoRA directory (config + safetensors) without torch."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": list(targets),
           "base_model_name_or_path": base, **config}  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    tensors = {}
    for target in targets:
        prefix = f"base_model.model.model.layers.0.self_attn.{target}"
        tensors[f"{prefix}.lora_A.weight"] = np.zeros((rank, 256), dtype=np.float32)
        tensors[f"{prefix}.lora_B.weight"] = np.zeros((256, rank), dtype=np.float32)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path


def tar_gz(directory: Path, arcname: str = "adapter") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(directory, arcname=arcname)
    return buffer.getvalue()
