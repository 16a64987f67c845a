"""`loraflow docs add|list|rm|rebuild` against a live gateway (uvicorn on loopback, fake engine, retrieval on)."""

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
from gateway.cli.docs import batches, collect
from gateway.cli.main import app as cli
from retrieval.settings import RetrievalSettings
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import ADMIN_KEY, BASE, make_settings
from tests.gateway.retrieval_support import CORPUS, RETRIEVAL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A gateway with retrieval on and a tenant `acme`; yields an admin client on it."""
    port = _free_port()
    settings = make_settings(tmp_path_factory.mktemp("docs-cli"), port=port, retrieval=RetrievalSettings(**RETRIEVAL))
    app = create_app(settings, transport=httpx.ASGITransport(FakeEngine(BASE).app))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    admin = httpx.Client(base_url=f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
    admin.post("/tenants", json={"id": "acme"})
    yield admin
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def run(live: httpx.Client, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LORAFLOW_GATEWAY_URL", str(live.base_url).removesuffix("/admin/"))
    monkeypatch.setenv("LORAFLOW_ADMIN_KEY", ADMIN_KEY)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["docs", *args], catch_exceptions=False)

    return invoke


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A directory of documents: the corpus in two folders, a hidden file and a PDF (both skipped)."""
    for i, (name, text, _, _) in enumerate(CORPUS):
        path = tmp_path / "kb" / ("policies" if i % 2 else "it") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "kb" / ".draft.md").write_text("# Draft\nnot ready")
    (tmp_path / "kb" / "scan.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "faq.jsonl").write_text(json.dumps({"text": "The office closes at 7 pm on Fridays."}) + "\n")
    return tmp_path


def names(live: httpx.Client, tenant: str = "acme") -> list[str]:
    return [d["name"] for d in live.get(f"/tenants/{tenant}/documents").json()["data"]]


def test_add_uploads_files_and_directories_in_batches_and_shows_what_was_stored(run, live, tree):
    result = run("add", "--tenant", "acme", str(tree / "kb"), str(tree / "faq.jsonl"), "--batch-files", "2",
                 "--metadata", '{"source": "wiki"}')  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(names(live)) == sorted(["it/parking.md", "policies/vacation.md", "it/wifi.txt",
                                          "policies/payroll.md", "faq.jsonl"])  # fmt: skip
    said = " ".join(result.output.split())
    assert "5 new" in said and "0 unchanged" in said and "policies/payroll.md" in said
    documents = live.get("/tenants/acme/documents").json()["data"]
    assert all(d["metadata"] == {"source": "wiki"} for d in documents)
    again = run("add", "--tenant", "acme", str(tree / "faq.jsonl"))
    assert again.exit_code == 0 and "0 new" in " ".join(again.output.split())


def test_a_bad_file_stops_the_command_before_anything_is_sent(run, live, tree):
    (tree / "broken.jsonl").write_text('{"title": "no text field"}\n')
    before = names(live)
    result = run("add", "--tenant", "acme", str(tree / "faq.jsonl"), str(tree / "broken.jsonl"))
    assert result.exit_code == 1 and "Nothing was sent" in result.output and "`text`" in result.output
    assert run("add", "--tenant", "acme", str(tree / "kb" / "scan.pdf")).exit_code == 1
    assert names(live) == before


def test_list_remove_and_rebuild(run, live, tree):
    run("add", "--tenant", "acme", str(tree / "kb"))
    listed = run("list", "--tenant", "acme")
    assert listed.exit_code == 0 and "it/parking.md" in listed.output and "exact (flat)" in listed.output
    doc_id = next(d["id"] for d in live.get("/tenants/acme/documents").json()["data"] if d["name"] == "it/wifi.txt")
    removed = run("rm", "--tenant", "acme", doc_id)
    assert removed.exit_code == 0 and f"Deleted {doc_id}" in " ".join(removed.output.split())
    assert "it/wifi.txt" not in names(live)
    assert run("rm", "--tenant", "acme", doc_id).exit_code == 1  # gone: 404
    rebuilt = run("rebuild", "--tenant", "acme", "--wait")
    assert rebuilt.exit_code == 0 and "Rebuilt" in rebuilt.output and "ready" in rebuilt.output
    paged = run("list", "--tenant", "acme", "--limit", "1")
    assert "--after doc_" in paged.output


def test_errors_say_what_is_wrong(run, tree):
    result = run("list", "--tenant", "nobody")
    assert result.exit_code == 1 and "No tenant" in result.output
    assert run("add", "--tenant", "acme", str(tree / "missing.txt")).exit_code == 2
    assert run("add", "--tenant", "acme", str(tree / "faq.jsonl"), "--metadata", "[1]").exit_code == 2


def test_collect_and_batches(tree):
    found = collect([tree / "kb"])
    assert [f.name for f in found] == ["it/parking.md", "it/wifi.txt", "policies/payroll.md", "policies/vacation.md"]
    groups = batches(found, max_files=3, max_bytes=10**9)
    assert [len(group) for group in groups] == [3, 1]
    assert [len(group) for group in batches(found, max_files=10, max_bytes=1)] == [1, 1, 1, 1]
