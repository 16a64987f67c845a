"""`loraflow train approve|reject`: a person's verdict on a run held for review, against the fake gateway."""

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
    fake.add_alias("acme", "support", production=1)
    for run_id in ("run_1", "run_2"):
        fake.runs[run_id] = {
            "id": run_id, "tenant_id": "acme", "adapter": "support", "trigger": "schedule", "runner": "host:1",
            "status": "held", "stage": "gating", "progress": {}, "candidate": "support@2",
            "reason": "held for review: signal concentration: ...", "created_at": "2026-01-02T03:00:00+00:00",
            "report": {}, "report_markdown": "",
        }  # fmt: skip
    settings = TrainerSettings(gateway_url="http://gateway.test", admin_key=SecretStr("admin"), var_dir=tmp_path)
    monkeypatch.setattr(
        cli, "_client", lambda url: (settings, GatewayClient(settings.url, "admin", transport=fake.transport()))
    )
    return fake


def test_approve_and_reject_send_the_verdict_with_its_reason(gateway):
    result = runner.invoke(app, ["train", "approve", "run_1", "--tenant", "acme", "--reason", "checked the samples"])
    assert result.exit_code == 0, result.output
    assert "run_1: promoted" in result.output and gateway.runs["run_1"]["reason"].endswith("checked the samples")
    result = runner.invoke(app, ["train", "reject", "run_2", "--tenant", "acme"])
    assert result.exit_code == 0 and "run_2: rejected" in result.output
    assert "POST /admin/tenants/acme/training-runs/run_2/reject" in gateway.calls


def test_a_run_that_is_not_held_cannot_be_judged(gateway):
    runner.invoke(app, ["train", "approve", "run_1", "--tenant", "acme"])
    result = runner.invoke(app, ["train", "reject", "run_1", "--tenant", "acme"])
    assert result.exit_code == 1 and "not held for review" in result.output
