"""A person's verdict on a training run the gate held for review: approve promotes its candidate, reject retires it;
only a held run, only once, never over a production that changed since, never another tenant's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.conftest import Env, fake_adapter


def held_run(env: Env, tmp_path: Path, tenant: str = "acme") -> str:
    """support@1 in production; a run that trained support@2 (staged) and was held for review."""
    env.tenant_with_key(tenant)
    env.register(tenant, "support", fake_adapter(tmp_path / f"{tenant}-1"))
    env.admin("POST", f"/tenants/{tenant}/adapters/support/promote", json={"version": 1})
    env.register(tenant, "support", fake_adapter(tmp_path / f"{tenant}-2"))
    run = env.admin("POST", f"/tenants/{tenant}/training-runs", json={"adapter": "support"}).json()
    held = {
        "status": "held", "candidate": "support@2", "reason": "held for review: signal concentration: ...",
        "report": {"production_version": "support@1"}, "report_markdown": "# acme / support: held\n",
    }  # fmt: skip
    assert env.admin("PATCH", f"/tenants/{tenant}/training-runs/{run['id']}", json=held).status_code == 200
    return run["id"]


def test_a_held_run_releases_the_tenants_lock(env, tmp_path):
    held_run(env, tmp_path)
    assert env.admin("POST", "/tenants/acme/training-runs", json={"adapter": "support"}).status_code == 201


def test_approving_promotes_the_candidate(env, tmp_path):
    run_id = held_run(env, tmp_path)
    approved = env.admin("POST", f"/tenants/acme/training-runs/{run_id}/approve", json={"reason": "samples look fine"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "promoted"
    assert approved.json()["reason"].startswith("promoted: approved by a person: samples look fine (the gate: held")
    assert env.admin("GET", "/tenants/acme/adapters/support").json()["production"] == "support@2"
    run = env.admin("GET", f"/tenants/acme/training-runs/{run_id}").json()
    assert "## Review" in run["report_markdown"] and "Approved by a person" in run["report_markdown"]
    promotions = env.admin("GET", "/tenants/acme/adapters/support/promotions").json()
    assert promotions[-1]["reason"] == f"{run_id} approved by a person: samples look fine"


def test_rejecting_retires_the_candidate_and_leaves_production(env, tmp_path):
    run_id = held_run(env, tmp_path)
    rejected = env.admin("POST", f"/tenants/acme/training-runs/{run_id}/reject", json={})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    adapter = env.admin("GET", "/tenants/acme/adapters/support").json()
    assert adapter["production"] == "support@1"
    assert [v["state"] for v in adapter["versions"]] == ["production", "retired"]


def test_a_run_is_judged_once(env, tmp_path):
    run_id = held_run(env, tmp_path)
    assert env.admin("POST", f"/tenants/acme/training-runs/{run_id}/reject", json={}).status_code == 200
    again = env.admin("POST", f"/tenants/acme/training-runs/{run_id}/approve", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_not_held"
    assert env.admin("GET", "/tenants/acme/adapters/support").json()["production"] == "support@1"


def test_an_approval_over_a_production_that_changed_is_refused(env, tmp_path):
    run_id = held_run(env, tmp_path)
    env.register("acme", "support", fake_adapter(tmp_path / "acme-3"))
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 3})
    stale = env.admin("POST", f"/tenants/acme/training-runs/{run_id}/approve", json={})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_run"
    assert "support@1 -> support@3" in stale.json()["error"]["message"]
    assert env.admin("GET", f"/tenants/acme/training-runs/{run_id}").json()["status"] == "held"  # unchanged
    assert env.admin("POST", f"/tenants/acme/training-runs/{run_id}/reject", json={}).status_code == 200


@pytest.mark.parametrize("verdict", ["approve", "reject"])
def test_bad_verdicts_change_nothing(env, tmp_path, verdict):
    run_id = held_run(env, tmp_path)
    env.tenant_with_key("globex")
    assert env.admin("POST", f"/tenants/globex/training-runs/{run_id}/{verdict}", json={}).status_code == 404
    assert env.admin("POST", f"/tenants/acme/training-runs/run_nope/{verdict}", json={}).status_code == 404
    long = env.admin("POST", f"/tenants/acme/training-runs/{run_id}/{verdict}", json={"reason": "x" * 1001})
    assert long.status_code == 400
    running = env.admin("POST", "/tenants/globex/training-runs", json={"adapter": "support"}).json()["id"]
    not_held = env.admin("POST", f"/tenants/globex/training-runs/{running}/{verdict}", json={})
    assert not_held.status_code == 409
    assert env.admin("GET", f"/tenants/acme/training-runs/{run_id}").json()["status"] == "held"
    assert env.admin("GET", "/tenants/acme/adapters/support/versions/2").json()["state"] == "staged"
