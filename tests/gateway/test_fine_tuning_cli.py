"""`loraflow fine-tuning jobs|promote` against a live gateway (uvicorn on a loopback port, fake engine)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.cli.main import app as cli
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import ADMIN_KEY, BASE, fake_adapter, make_settings, tar_gz
from tests.gateway.fine_tuning_support import chat_line, jsonl


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A gateway where tenant acme has one succeeded job and one that failed: (url, succeeded id, failed id)."""
    tmp = tmp_path_factory.mktemp("ft-cli")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(make_settings(tmp, port=port), transport=httpx.ASGITransport(FakeEngine(BASE).app))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    admin = httpx.Client(base_url=f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    wait(lambda: _ready(url))
    admin.post("/tenants", json={"id": "acme"})
    key = admin.post("/tenants/acme/keys", json={}).json()["key"]
    tenant = httpx.Client(base_url=f"{url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    good = tenant.post("/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", jsonl([chat_line()] * 10))})
    bad = tenant.post("/files", data={"purpose": "fine-tune"}, files={"file": ("b.jsonl", b"{\n" * 10)})
    succeeded = tenant.post("/fine_tuning/jobs", json={"model": BASE, "training_file": good.json()["id"]}).json()["id"]
    failed = tenant.post("/fine_tuning/jobs", json={"model": BASE, "training_file": bad.json()["id"]}).json()["id"]
    wait(lambda: tenant.get(f"/fine_tuning/jobs/{succeeded}").json()["status"] == "queued")
    job = admin.post("/fine-tuning/claim", json={}).json()
    done = admin.post(
        f"/fine-tuning/jobs/{job['id']}/complete",
        data={"run_id": job["run_id"], "summary": json.dumps({"trained_tokens": 1})},
        files={"adapter": ("a.tar.gz", tar_gz(fake_adapter(tmp / "adapter")), "application/gzip")},
    )
    assert done.status_code == 200, done.text
    yield url, succeeded, failed
    server.should_exit = True
    thread.join(10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready").status_code == 200
    except httpx.HTTPError:
        return False


def wait(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def run(live, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LORAFLOW_GATEWAY_URL", live[0])
    monkeypatch.setenv("LORAFLOW_ADMIN_KEY", ADMIN_KEY)
    return lambda *args: CliRunner().invoke(cli, ["fine-tuning", *args], catch_exceptions=False, env={"COLUMNS": "300"})


def test_jobs_lists_a_tenants_jobs_with_their_status_and_model(run, live):
    _, succeeded, failed = live
    shown = run("jobs", "--tenant", "acme")
    assert shown.exit_code == 0, shown.output
    assert succeeded in shown.output and failed in shown.output
    assert f"ft:{BASE}:acme::{succeeded}" in shown.output and "line 1: it is not valid JSON" in shown.output


def test_promote_serves_the_jobs_model_under_an_alias(run, live, tmp_path: Path):
    url, succeeded, _ = live
    promoted = run("promote", succeeded, "--tenant", "acme", "--to", "support")
    assert promoted.exit_code == 0, promoted.output
    assert "support@1 (production)" in promoted.output
    staged = run("promote", succeeded, "--tenant", "acme", "--to", "support", "--stage-only")
    assert "support@2 (staged)" in staged.output
    alias = httpx.get(f"{url}/admin/tenants/acme/adapters/support", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert alias.json()["production"] == "support@1"
