"""`loraflow up --workers N`: N gateway processes on one port, one record, counts summed over the workers; and the
refusal of more workers than the embedded SQLite database takes."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from gateway.cli.main import app as cli
from gateway.server import SQLITE_MAX_WORKERS, TooManyWorkers, check_workers
from gateway.settings import Settings
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import ADMIN_KEY, BASE
from tests.gateway.network_support import Served, free_port


def test_sqlite_takes_a_limited_number_of_workers_and_postgresql_any(tmp_path):
    sqlite = Settings(var_dir=tmp_path)
    check_workers(sqlite, SQLITE_MAX_WORKERS)
    with pytest.raises(TooManyWorkers, match="PostgreSQL"):
        check_workers(sqlite, SQLITE_MAX_WORKERS + 1)
    check_workers(Settings(var_dir=tmp_path, database_url="postgresql://u:p@db/loraflow"), 64)


def test_up_refuses_too_many_workers_on_sqlite_before_starting_anything(tmp_path):
    env = {"LORAFLOW_VAR_DIR": str(tmp_path / "var"), "LORAFLOW_ENGINE__URLS": '["http://127.0.0.1:9"]'}
    result = CliRunner().invoke(cli, ["up", "--workers", str(SQLITE_MAX_WORKERS + 1)], env=env)
    assert result.exit_code == 2
    assert f"at most {SQLITE_MAX_WORKERS}" in " ".join(result.output.split())


def _counter(metrics: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", metrics, re.MULTILINE))


@pytest.mark.slow
def test_two_workers_serve_one_port_write_one_record_and_sum_their_counts(tmp_path):
    port = free_port()
    with Served(FakeEngine(BASE).app) as engine_url:
        env = {**os.environ, "LORAFLOW_VAR_DIR": str(tmp_path / "var"), "LORAFLOW_ADMIN_KEY": ADMIN_KEY,
               "LORAFLOW_SECRET_KEY": "test-secret", "LORAFLOW_BASE_MODEL": BASE,
               "LORAFLOW_TRAINING__RUN_SCHEDULER": "false"}  # fmt: skip
        command = [sys.executable, "-m", "gateway.cli", "up", "--engine-url", engine_url, "--port", str(port)]
        gateway = subprocess.Popen([*command, "--workers", "2"], env=env, cwd=tmp_path, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:  # a guard against hanging, not a measure of time
                assert gateway.poll() is None and time.monotonic() < deadline, "the gateway did not start"
                try:
                    if httpx.get(f"{url}/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            workers = [p for p in psutil.Process(gateway.pid).children() if "spawn_main" in " ".join(p.cmdline())]
            assert len(workers) == 2

            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            assert httpx.post(f"{url}/admin/tenants", json={"id": "acme"}, headers=admin).status_code == 201
            key = httpx.post(f"{url}/admin/tenants/acme/keys", json={}, headers=admin).json()["key"]
            body = {"model": BASE, "messages": [{"role": "user", "content": "hello"}]}
            headers = {"Authorization": f"Bearer {key}", "connection": "close"}  # new connections: both workers
            for _ in range(40):
                assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code == 200
            served_by = _counter(httpx.get(f"{url}/metrics").text, "loraflow_completions_total")
            assert served_by == 40  # whichever worker answers the scrape
        finally:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(60)
    with sqlite3.connect(tmp_path / "var" / "loraflow.db") as db:  # each worker wrote its rows before it stopped
        assert db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 40
