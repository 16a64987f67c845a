"""The end-to-end rig: one real vLLM (CPU) on the tiny model for the whole session, real PEFT adapters, and the
real gateway (uvicorn on a loopback port) in front of it, driven with the official `openai` client."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from sqlalchemy import select

from feedback.models import interactions
from gateway.app import create_app
from gateway.child_process import ChildProcess
from gateway.settings import EngineSettings, Settings
from tests.e2e import stack
from tests.e2e.adapters import constant_examples, make_adapter, routing_examples
from tests.e2e.default_model import DefaultModelGateway
from tests.e2e.stack import ADMIN_KEY, BASE_NAME, CACHE, free_port, start_engine, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return stack.tiny_model()


@pytest.fixture(scope="session")
def adapter_dirs(tiny_model: Path) -> dict[str, Path]:
    """Real adapters: three that always answer one word, and one that routes tickets."""
    cache = CACHE / "adapters"
    made = {word.lower(): make_adapter(tiny_model, cache, word.lower(), constant_examples(word)) for word in
            ("ALPHA", "BRAVO", "GLOBEX")}  # fmt: skip
    made["routing"] = make_adapter(tiny_model, cache, "routing", routing_examples())
    return made


@pytest.fixture(scope="session")
def default_model_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DefaultModelGateway]:
    """`loraflow up` on the default model (SmolLM2-135M-Instruct), retrieval on: shared by the real-model group."""
    workdir = tmp_path_factory.mktemp("default-model")
    try:
        gateway = DefaultModelGateway(workdir, engine_core="1")  # the tiny model's engine has core 0
    except TimeoutError:
        pytest.fail("`loraflow up` was not ready; its log:\n" + (workdir / "up.log").read_text()[-5000:])
    yield gateway
    gateway.stop()


@dataclass
class Engine:
    process: ChildProcess
    url: str

    def restart(self) -> None:
        self.process.stop()
        self.process.start()
        wait_for(f"{self.url}/health", 300)


@pytest.fixture(scope="session")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    workdir = tmp_path_factory.mktemp("engine")
    try:
        process, url = start_engine(tiny_model, workdir, threads_bind="0")  # core 1 is for a second engine
    except TimeoutError:
        pytest.fail("vLLM did not start; its log:\n" + (workdir / "engine.log").read_text()[-5000:])
    yield Engine(process, url)
    process.stop()


@dataclass
class Gateway:
    url: str
    app: object
    settings: Settings

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}/admin{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120, **kwargs
        )

    def client(self, key: str, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)

    def async_client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    def tenant(self, tenant_id: str, **key_options) -> str:
        assert self.admin("POST", "/tenants", json={"id": tenant_id}).status_code in (201, 409)
        response = self.admin("POST", f"/tenants/{tenant_id}/keys", json=key_options)
        assert response.status_code == 201, response.text
        return response.json()["key"]

    def register(self, tenant_id: str, alias: str, path: Path) -> httpx.Response:
        return self.admin("POST", f"/tenants/{tenant_id}/adapters/{alias}/versions", json={"path": str(path)})

    def promote(self, tenant_id: str, alias: str, version: int) -> httpx.Response:
        return self.admin("POST", f"/tenants/{tenant_id}/adapters/{alias}/promote", json={"version": version})

    @property
    def state(self):
        return self.app.state.gateway

    def recorded(self, tenant_id: str) -> dict[str, dict]:
        """The tenant's interaction rows by completion id, once every row the gateway has accepted is written."""
        assert self.state.recorder.writer.flush(timeout=30)
        with self.state.db.connect() as connection:
            query = select(interactions).where(interactions.c.tenant_id == tenant_id)
            return {row.id: row._asdict() for row in connection.execute(query)}

    def interaction(self, completion_id: str, timeout_s: float = 10) -> Any:
        """One completion's row. A stream's row is submitted as the stream ends, which can be just after the client
        has read [DONE], or (a client that left) when the gateway notices: it is waited for."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.state.recorder.writer.flush(timeout=30)
            with self.state.db.connect() as connection:
                query = select(interactions).where(interactions.c.id == completion_id)
                if (row := connection.execute(query).one_or_none()) is not None:
                    return row
            assert time.monotonic() < deadline, f"{completion_id} was never recorded"
            time.sleep(0.05)


def serve(settings: Settings) -> tuple[Gateway, uvicorn.Server, threading.Thread]:
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    wait_for(f"{url}/health", 60)
    return Gateway(url, app, settings), server, thread


@pytest.fixture(scope="session")
def gateway(engine: Engine, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = Settings(
        var_dir=tmp_path_factory.mktemp("gateway-var"),
        port=free_port(),
        admin_key=ADMIN_KEY,
        secret_key="e2e-secret",
        base_model=str(tiny_model),
        served_model_name=BASE_NAME,
        engine=EngineSettings(urls=[engine.url], health_interval_s=0.5, max_lora_rank=16, drain_timeout_s=30),
        registry_poll_s=0.5,
    )
    gw, server, thread = serve(settings)
    wait_for(f"{gw.url}/ready", 60)
    yield gw
    server.should_exit = True
    thread.join(30)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
