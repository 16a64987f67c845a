"""The trainer's commands on the `loraflow` CLI, against the fake gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from gateway.cli.main import app
from tests.trainer.fake_gateway import FakeGateway
from trainer import cli
from trainer.gateway_client import GatewayClient
from trainer.settings import TrainerSettings

runner = CliRunner()


@pytest.fixture
def gateway(monkeypatch, tmp_path: Path) -> FakeGateway:
    fake = FakeGateway()
    fake.add_tenant("acme")
    fake.add_alias("acme", "support")
    fake.runs["run_1"] = {
        "id": "run_1", "tenant_id": "acme", "adapter": "support", "trigger": "schedule", "runner": "host:1",
        "status": "rejected", "stage": "done", "progress": {}, "candidate": "support@2",
        "reason": "rejected: 3 of 20 golden items regress", "created_at": "2026-01-02T03:00:00+00:00",
        "report": {"status": "rejected"}, "report_markdown": "# acme / support: rejected\n\n> why it was rejected",
    }  # fmt: skip
    settings = TrainerSettings(gateway_url="http://gateway.test", admin_key=SecretStr("admin"), var_dir=tmp_path)
    monkeypatch.setattr(
        cli, "_client", lambda url: (settings, GatewayClient(settings.url, "admin", transport=fake.transport()))
    )
    return fake


def test_runs_are_listed_with_their_status_and_reason(gateway):
    result = runner.invoke(app, ["train", "runs", "--tenant", "acme"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "run_1" in result.output and "rejected" in result.output and "golden items regress" in result.output


def test_show_prints_the_report(gateway):
    result = runner.invoke(app, ["train", "show", "run_1", "--tenant", "acme"])
    assert result.exit_code == 0 and "why it was rejected" in result.output


def test_golden_is_checked_here_then_uploaded(gateway, tmp_path: Path):
    good = tmp_path / "golden.jsonl"
    good.write_text('{"input": "refund me", "expected": "billing", "scorer": "exact"}\n')
    result = runner.invoke(app, ["train", "golden", "--tenant", "acme", "--adapter", "support", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 items (exact)" in result.output and gateway.golden[("acme", "support")].startswith('{"input"')

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "refund me", "expected": "billing", "scorer": "bleu"}\n')
    result = runner.invoke(app, ["train", "golden", "--tenant", "acme", "--adapter", "support", str(bad)])
    assert result.exit_code == 1 and "unknown scorer 'bleu'" in result.output
    assert "bleu" not in gateway.golden[("acme", "support")]


def test_train_needs_a_tenant_or_all(gateway):
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "--tenant" in result.output
