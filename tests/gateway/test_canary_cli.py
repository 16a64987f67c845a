"""`loraflow adapters canary start|show|stop` against a live gateway (uvicorn on a loopback port, fake engine)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from feedback.settings import RecordSettings
from gateway.app import create_app
from gateway.cli.main import app as cli
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import ADMIN_KEY, BASE, fake_adapter, make_settings
from tests.gateway.record_support import QUICK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A gateway with tenant acme: support@1 in production, support@2 registered."""
    port = _free_port()
    settings = make_settings(tmp_path, port=port, record=RecordSettings(**QUICK))
    app = create_app(settings, transport=httpx.ASGITransport(FakeEngine(BASE).app))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    admin = httpx.Client(base_url=f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    admin.post("/tenants", json={"id": "acme"})
    for n in (1, 2):
        admin.post("/tenants/acme/adapters/support/versions", json={"path": str(fake_adapter(tmp_path / f"a{n}"))})
    admin.post("/tenants/acme/adapters/support/promote", json={"version": 1})
    monkeypatch.setenv("LORAFLOW_GATEWAY_URL", url)
    monkeypatch.setenv("LORAFLOW_ADMIN_KEY", ADMIN_KEY)
    yield url
    server.should_exit = True
    thread.join(10)


def run(*args: str):
    return CliRunner().invoke(cli, ["adapters", "canary", *args], env={"COLUMNS": "200"})


def test_start_show_and_stop_a_canary(live):
    started = run("start", "acme", "support", "2", "--share", "0.25")
    assert started.exit_code == 0, started.output
    assert "support@2 serves 25% of support's users" in started.output
    shown = run("show", "acme", "support")
    assert shown.exit_code == 0, shown.output
    assert "running (25% to the candidate)" in shown.output and "support@1" in shown.output
    assert "decides at 3.00" in shown.output
    stopped = run("stop", "acme", "support", "--decision", "rollback", "--reason", "not now")
    assert stopped.exit_code == 0 and "rolled_back" in stopped.output and "not now" in stopped.output


def test_refusals_say_what_is_wrong(live):
    assert run("start", "acme", "support", "1").exit_code == 1  # production already
    bad = run("start", "acme", "support", "2", "--on-budget", "toss")
    assert bad.exit_code == 1 and "on_budget" in bad.output
    missing = run("show", "acme", "support")
    assert missing.exit_code == 1 and "never had a canary" in missing.output
