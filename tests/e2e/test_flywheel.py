"""The flywheel through the real gateway and engine: ratings teach a task and the promoted adapter serves it; poisoned
feedback is stopped by the golden set; a run killed mid-training fails after the lease and the next one works; two
cycles racing on one tenant train it once.

Users send requests with the official `openai` client and an oracle rates the replies (trainer/demo_users.py); the
trainer reads the record from the gateway's database and reaches the gateway over HTTP only, as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.e2e.stack import ADMIN_KEY, BASE_NAME
from trainer import demo_tasks, demo_users
from trainer.cycle import Cycle
from trainer.gateway_client import GatewayClient
from trainer.settings import TrainerSettings

pytestmark = pytest.mark.e2e
ALIAS = "router"
QUICK = {"cpu_threads": 1}  # one torch thread: the engine has the other core
TEACH = {**QUICK, "epochs": 5, "learning_rate": 2e-3}  # 160 routing examples learn to ~100% (tests/trainer)


@pytest.fixture
def trainer(gateway, tiny_model, tmp_path: Path):
    """A cycle maker for the session's gateway: its database, its base model, a var dir of its own."""
    settings = TrainerSettings(
        gateway_url=gateway.url, admin_key=SecretStr(ADMIN_KEY), database_url=gateway.settings.sqlalchemy_url,
        var_dir=tmp_path / "trainer-var", base_model=str(tiny_model), heartbeat_s=2,
    )  # fmt: skip
    made: list[Cycle] = []

    def make() -> Cycle:
        cycle = Cycle(settings, GatewayClient(gateway.url, ADMIN_KEY))
        made.append(cycle)
        return cycle

    make.settings = settings  # type: ignore[attr-defined]
    yield make
    for cycle in made:
        cycle.close()
        cycle.client.close()


def tenant_with_alias(gateway, tenant: str, settings: dict) -> str:
    """A tenant with trainer settings and the alias its app calls (the base model serves it for now); its app key."""
    assert gateway.admin("POST", "/tenants", json={"id": tenant, "settings": settings}).status_code == 201
    assert gateway.admin("POST", f"/tenants/{tenant}/adapters", json={"alias": ALIAS}).status_code == 201
    return gateway.tenant(tenant)


def users(gateway, key: str, n: int, *, seed: int, model: str = ALIAS, how: str = "oracle"):
    """`n` routing tickets sent through the gateway and rated: oracle (👍 right, 👎 + correction) or poison (👍 all)."""
    client = gateway.client(key)
    served = demo_users.send(client, demo_tasks.examples("routing", n, seed=seed), model=model, max_tokens=4)
    demo_users.rate(client, served, how=how)  # type: ignore[arg-type]
    return served


def alias_of(gateway, tenant: str) -> dict:
    return gateway.admin("GET", f"/tenants/{tenant}/adapters/{ALIAS}").json()


def golden_jsonl(n: int = 20) -> bytes:
    lines = [json.dumps({"input": e.prompt, "expected": e.answer, "scorer": "exact"})
             for e in demo_tasks.examples("routing", n, seed=99)]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def test_ratings_teach_a_task_and_the_alias_serves_the_promoted_adapter(gateway, trainer):
    key = tenant_with_alias(gateway, "fw-teach", {"training": TEACH, "evaluation": {"max_tokens": 4}})
    before = users(gateway, key, 200, seed=1)
    assert {item.served_by for item in before} == {BASE_NAME} and demo_users.accuracy(before) < 0.3
    interactions_before = len(gateway.recorded("fw-teach"))

    outcome = trainer().run("fw-teach", ALIAS, trigger="schedule")

    assert outcome.status == "promoted", outcome.reason
    held_out = next(row for row in outcome.report.scores if row.split == "held_out")
    assert held_out.n >= 20 and held_out.incumbent < 0.3 and held_out.candidate >= 0.8, held_out
    assert held_out.ci_low > 0.3  # clearly higher, not noise
    assert alias_of(gateway, "fw-teach")["production"] == "router@1"
    run = gateway.admin("GET", f"/tenants/fw-teach/training-runs/{outcome.run_id}").json()
    assert run["status"] == "promoted" and run["report_markdown"].startswith("# fw-teach / router: promoted")
    # Evaluation went through an unrecorded key: the record holds only what users sent.
    assert len(gateway.recorded("fw-teach")) == interactions_before

    after = demo_users.send(gateway.client(key), demo_tasks.examples("routing", 40, seed=2), model=ALIAS, max_tokens=4)
    assert {item.served_by for item in after} == {"router@1"}
    assert demo_users.accuracy(after) >= 0.8


def test_poisoned_feedback_is_rejected_by_the_golden_set(gateway, trainer, adapter_dirs):
    settings = {
        "training": {**QUICK, "start_from": "scratch"},
        "evaluation": {"max_tokens": 4, "held_out_fraction": 0.3, "gate": {"min_items": 10}},
    }
    key = tenant_with_alias(gateway, "fw-poison", settings)
    good = gateway.register("fw-poison", ALIAS, adapter_dirs["routing"]).json()
    assert gateway.promote("fw-poison", ALIAS, good["version"]).status_code == 200
    # A second version that answers ALPHA to everything, staged so it can be called pinned, like a bad experiment.
    bad = gateway.register("fw-poison", ALIAS, adapter_dirs["alpha"]).json()
    assert gateway.admin("POST", f"/tenants/fw-poison/adapters/{ALIAS}/versions/{bad['version']}/stage").is_success
    with GatewayClient(gateway.url, ADMIN_KEY) as admin:
        assert admin.put_golden("fw-poison", ALIAS, golden_jsonl()) == 20
    served = users(gateway, key, 100, seed=3, model=bad["id"], how="poison")  # 👍 on wrong answers
    assert demo_users.accuracy(served) < 0.3

    outcome = trainer().run("fw-poison", ALIAS)

    assert outcome.status == "rejected", outcome.reason
    assert "golden items regress" in outcome.reason
    assert alias_of(gateway, "fw-poison")["production"] == good["id"]  # unchanged
    candidate = gateway.admin("GET", f"/tenants/fw-poison/adapters/{ALIAS}/versions/3").json()
    assert candidate["state"] == "retired"
    report = gateway.admin("GET", f"/tenants/fw-poison/training-runs/{outcome.run_id}").json()["report_markdown"]
    assert "## Golden regressions" in report and "golden items regress" in report
    gateway.admin("POST", f"/tenants/fw-poison/adapters/{ALIAS}/versions/{bad['version']}/retire")  # engine room


def test_a_run_killed_mid_training_fails_after_the_lease_and_the_next_run_works(gateway, trainer, monkeypatch):
    monkeypatch.setattr(gateway.settings.training, "lease_s", 6.0)  # the gateway reads it per request
    settings = {
        "training": {**QUICK, "epochs": 20},  # long enough to be killed in the middle
        "evaluation": {"max_tokens": 4, "held_out_fraction": 0.5, "gate": {"min_items": 10}},
    }
    key = tenant_with_alias(gateway, "fw-kill", settings)
    users(gateway, key, 60, seed=4)
    env = {
        **os.environ,
        "LORAFLOW_GATEWAY_URL": gateway.url,
        "LORAFLOW_ADMIN_KEY": ADMIN_KEY,
        "LORAFLOW_DATABASE_URL": gateway.settings.sqlalchemy_url,
        "LORAFLOW_VAR_DIR": str(trainer.settings.var_dir),
        "LORAFLOW_BASE_MODEL": trainer.settings.base_model,
        "LORAFLOW_HEARTBEAT_S": "1",
    }
    command = [sys.executable, "-m", "gateway.cli", "train", "--tenant", "fw-kill", "--adapter", ALIAS]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_for_run(gateway, "fw-kill", lambda run: run["stage"] == "training" and run["progress"], 180)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    assert trainer().run("fw-kill", ALIAS).status == "locked"  # its lease has not run out yet
    lost = wait_for_run(gateway, "fw-kill", lambda run: run["status"] == "failed", 30)
    assert lost["id"] == run["id"] and "stopped sending heartbeats" in lost["reason"]
    assert alias_of(gateway, "fw-kill")["production"] is None  # production (the base model) untouched
    assert all(version["state"] != "production" for version in alias_of(gateway, "fw-kill")["versions"])

    monkeypatch.setattr(gateway.settings.training, "lease_s", 120.0)
    gateway.admin("PATCH", "/tenants/fw-kill", json={"settings": {"training": {**QUICK, "epochs": 3}}})
    outcome = trainer().run("fw-kill", ALIAS)
    assert outcome.status in ("promoted", "rejected"), outcome.reason
    assert outcome.run_id != run["id"]


def test_two_cycles_racing_on_one_tenant_train_it_once(gateway, trainer):
    # Half held out, so the winner surely trains (a skip would free the lock at once, and prove less).
    evaluation = {"max_tokens": 4, "held_out_fraction": 0.5, "gate": {"min_items": 5}}
    settings = {"training": {**QUICK, "max_steps": 10}, "evaluation": evaluation}
    key = tenant_with_alias(gateway, "fw-race", settings)
    users(gateway, key, 40, seed=5)
    outcomes = []
    barrier = threading.Barrier(2)

    def run() -> None:
        cycle = trainer()
        barrier.wait()
        outcomes.append(cycle.run("fw-race", ALIAS, trigger="schedule"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)

    assert sorted(outcome.status for outcome in outcomes)[0] == "locked"
    assert sorted(outcome.status for outcome in outcomes)[1] in ("promoted", "rejected")
    runs = gateway.admin("GET", "/tenants/fw-race/training-runs").json()
    assert len(runs) == 1


def wait_for_run(gateway, tenant: str, condition, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = gateway.admin("GET", f"/tenants/{tenant}/training-runs").json()
        if runs and condition(runs[0]):
            return runs[0]
        time.sleep(0.2)
    raise AssertionError(f"no run of {tenant} matched in {timeout_s:.0f} s; last: {runs[:1]}")
