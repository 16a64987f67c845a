"""`loraflow feedback export|stats|list|forget` against a live gateway (uvicorn on a loopback port, fake engine)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from feedback.settings import RecordSettings
from gateway.app import create_app
from gateway.cli.feedback import parse_when
from gateway.cli.main import app as cli
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import ADMIN_KEY, BASE, fake_adapter, make_settings
from tests.gateway.record_support import QUICK

HELLO = [{"role": "user", "content": "hello"}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway with tenant acme: support@1 served three times to ann, bob and cid, rated up, down (with a
    correction), and not at all."""
    tmp = tmp_path_factory.mktemp("cli")
    port = _free_port()
    settings = make_settings(tmp, port=port, record=RecordSettings(**QUICK))
    app = create_app(settings, transport=httpx.ASGITransport(FakeEngine(BASE).app))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    admin = httpx.Client(base_url=f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    admin.post("/tenants", json={"id": "acme"})
    key = admin.post("/tenants/acme/keys", json={}).json()["key"]
    admin.post("/tenants/acme/adapters/support/versions", json={"path": str(fake_adapter(tmp / "adapter"))})
    admin.post("/tenants/acme/adapters/support/promote", json={"version": 1})
    tenant = httpx.Client(base_url=f"{url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    ratings = {"ann": {"rating": "up"}, "bob": {"rating": "down", "correction": "Better."}, "cid": None}
    for user, rating in ratings.items():
        reply = tenant.post("/chat/completions", json={"model": "support", "messages": HELLO, "user": user}).json()
        if rating:
            rated = tenant.post("/feedback", json={"completion_id": reply["id"], "user": user, **rating})
            assert rated.status_code == 201, rated.text
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def run(live: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LORAFLOW_GATEWAY_URL", live)
    monkeypatch.setenv("LORAFLOW_ADMIN_KEY", ADMIN_KEY)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["feedback", *args], catch_exceptions=False)

    return invoke


def test_export_writes_a_valid_jsonl_file(run, tmp_path: Path):
    target = tmp_path / "acme.jsonl"
    result = run("export", "--tenant", "acme", "--format", "kto", "--since", "1d", "-o", str(target))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(line["label"] for line in lines) == [False, True, True]  # ann's up; bob's down and correction
    assert all(set(line) == {"prompt", "completion", "label"} for line in lines)
    said = " ".join(result.output.split())  # as rich wrapped it
    assert "Wrote 3 examples" in said and "(from 2 ratings)" in said
    assert not (tmp_path / "acme.jsonl.partial").exists()


def test_export_to_stdout_in_chat_format(run):
    result = run("export", "--tenant", "acme", "--adapter", "support")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["messages"][-1]["content"] for line in lines][-1] == "Better."
    assert len(lines) == 2


def test_export_errors_say_what_is_wrong(run, tmp_path: Path):
    result = run("export", "--tenant", "nobody", "-o", str(tmp_path / "x.jsonl"))
    assert result.exit_code == 1 and "No tenant" in result.output
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.jsonl.partial").exists()
    assert run("export", "--tenant", "acme", "--since", "last tuesday").exit_code == 2


def test_stats_table(run):
    result = run("stats", "--tenant", "acme")
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "support@1" in line)
    assert "3" in row and "50%" in row  # 3 interactions; one up, one down


def test_list_and_filters(run):
    everything = run("list", "--tenant", "acme")
    assert everything.exit_code == 0 and "ann" in everything.output and "bob" in everything.output
    downs = run("list", "--tenant", "acme", "--rating", "down")
    assert "bob" in downs.output and "ann" not in downs.output
    paged = run("list", "--tenant", "acme", "--limit", "1")
    assert "--cursor" in paged.output


def test_forget_a_user(run):
    result = run("forget", "--tenant", "acme", "--user", "cid", "--yes")
    assert result.exit_code == 0 and "1 interactions and 0 ratings" in result.output
    assert run("forget", "--tenant", "acme", "--user", "cid").exit_code == 1  # asks first; no answer: aborted


def test_parse_when():
    assert parse_when(None) is None
    assert parse_when("2024-05-01") == "2024-05-01T00:00:00"
    assert parse_when("2024-05-01T10:00:00Z") == "2024-05-01T10:00:00+00:00"
    week_ago = datetime.fromisoformat(parse_when("7d"))
    assert abs(week_ago - (datetime.now(UTC) - timedelta(days=7))) < timedelta(seconds=5)
    with pytest.raises(typer.BadParameter):
        parse_when("7 days")
