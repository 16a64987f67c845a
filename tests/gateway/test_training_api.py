"""What the trainer needs from the gateway: runs that are also the per-tenant lock, golden sets, eval keys."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import openai
from sqlalchemy import select, update

from feedback.models import interactions
from gateway.store.models import TrainingRun
from tests.gateway.conftest import BASE, fake_adapter

MESSAGES = [{"role": "user", "content": "hello"}]


def start(env, tenant="acme", adapter="support"):
    return env.admin("POST", f"/tenants/{tenant}/training-runs", json={"adapter": adapter, "runner": "test:1"})


def test_one_running_run_per_tenant(env):
    env.tenant_with_key("acme")
    env.tenant_with_key("globex")
    first = start(env)
    assert first.status_code == 201 and first.json()["status"] == "running"
    second = start(env, adapter="other")
    assert second.status_code == 409 and second.json()["error"]["code"] == "run_in_progress"
    assert start(env, tenant="globex").status_code == 201  # other tenants are not held up
    run_id = first.json()["id"]
    progress = {"stage": "training", "progress": {"step": 3, "total_steps": 10, "loss": 1.5}}
    assert env.admin("PATCH", f"/tenants/acme/training-runs/{run_id}", json=progress).status_code == 200
    for curve in ([[1, 2.0]] * 1001, [["one", 2.0]], [[1, 2.0, 3]]):  # the live loss plot's points: bounded, pairs
        bad = {"progress": {"step": 4, "loss_curve": curve}}
        refused = env.admin("PATCH", f"/tenants/acme/training-runs/{run_id}", json=bad)
        assert refused.status_code == 400 and "loss_curve" in refused.json()["error"]["message"]
    done = {"status": "rejected", "reason": "no better", "report": {"decision": "reject"}, "report_markdown": "# Run"}
    assert env.admin("PATCH", f"/tenants/acme/training-runs/{run_id}", json=done).json()["finished_at"]
    assert env.admin("PATCH", f"/tenants/acme/training-runs/{run_id}", json={"stage": "x"}).status_code == 409
    assert start(env).status_code == 201  # the lock was released with the final status
    full = env.admin("GET", f"/tenants/acme/training-runs/{run_id}").json()
    assert full["report"] == {"decision": "reject"} and full["progress"]["step"] == 3  # nothing of the refused updates
    assert env.admin("GET", f"/tenants/acme/training-runs/{run_id}/report.md").text == "# Run"
    listed = env.admin("GET", "/tenants/acme/training-runs").json()
    assert [r["status"] for r in listed] == ["running", "rejected"] and "report" not in listed[0]
    finished = env.admin("GET", "/tenants/acme/training-runs", params={"status": "promoted,rejected"}).json()
    assert [r["id"] for r in finished] == [run_id]


def test_a_run_whose_trainer_died_loses_the_lock_after_the_lease(env):
    env.tenant_with_key("acme")
    run_id = start(env).json()["id"]
    gw = env.client.app.state.gateway
    with gw.sessions() as session:  # as if the last heartbeat was long ago (the trainer was SIGKILLed)
        stale = time.time() - gw.settings.training.lease_s - 5
        session.execute(
            update(TrainingRun).where(TrainingRun.id == run_id).values(heartbeat_at=datetime.fromtimestamp(stale, UTC))
        )
        session.commit()
    assert start(env).status_code == 201
    lost = env.admin("GET", f"/tenants/acme/training-runs/{run_id}").json()
    assert lost["status"] == "failed" and "heartbeats" in lost["reason"]
    response = env.admin("PATCH", f"/tenants/acme/training-runs/{run_id}", json={"stage": "training"})
    assert response.status_code == 409  # a trainer that was only slow learns its run is over


def test_bad_run_requests(env):
    env.tenant_with_key("acme")
    assert env.admin("POST", "/tenants/nope/training-runs", json={"adapter": "a"}).status_code == 404
    assert env.admin("POST", "/tenants/acme/training-runs", json={"adapter": ""}).status_code == 400
    run_id = start(env).json()["id"]
    assert env.admin("PATCH", f"/tenants/acme/training-runs/{run_id}", json={"status": "won"}).status_code == 400
    assert env.admin("PATCH", f"/tenants/acme/training-runs/{run_id}", json={"colour": "red"}).status_code == 400
    assert env.admin("GET", f"/tenants/globex/training-runs/{run_id}").status_code == 404


def test_golden_sets(env):
    env.tenant_with_key("acme")
    assert env.admin("POST", "/tenants/acme/adapters", json={"alias": "support"}).status_code == 201
    lines = (
        b'{"input": "hi", "expected": "billing", "scorer": "exact"}\n'
        b'{"input": "yo", "expected": ["x", "y"], "scorer": "contains"}\n'
    )
    headers = {"Content-Type": "application/x-ndjson"}
    assert env.admin("PUT", "/tenants/acme/adapters/support/golden", content=lines, headers=headers).json() == {
        "items": 2
    }
    assert env.admin("GET", "/tenants/acme/adapters/support/golden").text.count("\n") == 2
    bad = b'{"input": "hi", "scorer": "exact"}\nnot json\n'
    response = env.admin("PUT", "/tenants/acme/adapters/support/golden", content=bad, headers=headers)
    assert response.status_code == 400 and "line 1" in response.json()["error"]["message"]
    assert "line 2" in response.json()["error"]["message"]
    assert env.admin("GET", "/tenants/acme/adapters/support/golden").text.count("\n") == 2  # unchanged
    assert env.admin("PUT", "/tenants/acme/adapters/nope/golden", content=lines, headers=headers).status_code == 404


def test_an_alias_made_before_any_version_serves_the_base_model_then_its_first_promotion(env, tmp_path):
    key = env.tenant_with_key("acme")
    assert env.admin("POST", "/tenants/acme/adapters", json={"alias": "support"}).status_code == 201
    assert env.admin("POST", "/tenants/acme/adapters", json={"alias": "support"}).status_code == 409
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)
    assert [m.id for m in client.models.list()] == [BASE, "support"]
    assert client.chat.completions.create(model="support", messages=MESSAGES).model == BASE
    env.register("acme", "support", fake_adapter(tmp_path / "a1"))
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1})
    assert client.chat.completions.create(model="support", messages=MESSAGES).model == "support@1"


def test_an_evaluation_key_is_not_recorded(env):
    env.tenant_with_key("acme")
    created = env.admin("POST", "/tenants/acme/keys", json={"name": "trainer run", "record": False}).json()
    assert created["record"] is False
    client = openai.OpenAI(
        base_url="http://testserver/v1", api_key=created["key"], http_client=env.client, max_retries=0
    )
    raw = client.chat.completions.with_raw_response.create(model=BASE, messages=MESSAGES)
    assert "x-loraflow-feedback-token" not in raw.headers
    gw = env.client.app.state.gateway
    assert gw.recorder.writer.flush(timeout=10)
    with gw.db.connect() as connection:
        assert connection.execute(select(interactions.c.id)).all() == []
