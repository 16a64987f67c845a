"""Helpers of the record API tests: a gateway on the fake engine with quick record settings, and short calls."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from feedback.models import feedback, interactions
from feedback.settings import RecordSettings
from gateway.app import create_app
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import BASE, Env, fake_adapter, make_settings

# Short refreshes and flushes, so a test of a refresh takes a fraction of a second. Feedback waits the product's 2 s
# for a just-served interaction: it waits for the writer's batch (done as soon as it is written), and 0.3 s was too
# short for a writer at nice 10 on a busy CI machine (a 503 for a completion served a moment before).
QUICK = {"lookup_wait_s": 2.0, "stats_refresh_s": 0.1, "flush_interval_s": 0.01}
HELLO = [{"role": "user", "content": "hello"}]


@contextlib.contextmanager
def open_env(tmp_path: Path, record: dict[str, Any] | None = None, **overrides: Any) -> Iterator[Env]:
    engine = FakeEngine(BASE)
    settings = make_settings(tmp_path, record=RecordSettings(**{**QUICK, **(record or {})}), **overrides)
    app = create_app(settings, transport=httpx.ASGITransport(engine.app))
    with TestClient(app) as client:
        env = Env(client, engine, settings)
        env.wait_ready()
        yield env


def gateway(env: Env) -> Any:
    return env.client.app.state.gateway


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def sdk(env: Env, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)


def complete(env: Env, key: str, model: str = BASE, **kwargs: Any) -> tuple[str, str]:
    """One chat completion: (its id, its feedback token)."""
    raw = sdk(env, key).chat.completions.with_raw_response.create(model=model, messages=HELLO, **kwargs)
    return raw.parse().id, raw.headers["x-loraflow-feedback-token"]


def rate(env: Env, secret: str, **body: Any) -> httpx.Response:
    return env.client.post("/v1/feedback", json=body, headers=bearer(secret))


def with_adapter(env: Env, tmp_path: Path, tenant: str, alias: str = "support", versions: int = 1) -> str:
    """A tenant with a key and `alias` at version `versions` in production (earlier versions registered)."""
    key = env.tenant_with_key(tenant)
    for number in range(1, versions + 1):
        assert env.register(tenant, alias, fake_adapter(tmp_path / f"{tenant}-{alias}-{number}")).status_code == 201
    promoted = env.admin("POST", f"/tenants/{tenant}/adapters/{alias}/promote", json={"version": versions})
    assert promoted.status_code == 200, promoted.text
    return key


def flushed(env: Env) -> Any:
    """The database once every row accepted so far is written."""
    gw = gateway(env)
    assert gw.recorder.writer.flush(timeout=10)
    return gw.db


def count(env: Env, table: Any = interactions) -> int:
    with flushed(env).connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def feedback_rows(env: Env) -> list[dict[str, Any]]:
    with gateway(env).db.connect() as connection:
        return [row._asdict() for row in connection.execute(select(feedback))]


@contextlib.contextmanager
def sqlite_locked(env: Env) -> Iterator[None]:
    """The gateway's SQLite database refuses writers (another connection holds it); readers still read (WAL)."""
    lock = sqlite3.connect(gateway(env).db.url.database, timeout=5, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def wait_until(condition: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result
