"""A run's status updates: heartbeats, throttled progress, and noticing a lost lease."""

from __future__ import annotations

import time

import pytest

from tests.trainer.fake_gateway import FakeGateway
from trainer.gateway_client import GatewayClient, RunInProgress
from trainer.progress import TrainingProgress
from trainer.run_status import RunLost, RunStatus


@pytest.fixture
def gateway() -> FakeGateway:
    fake = FakeGateway()
    fake.add_tenant("acme")
    return fake


@pytest.fixture
def client(gateway: FakeGateway):
    with GatewayClient("http://gateway.test", "admin", transport=gateway.transport()) as made:
        yield made


def start(client: GatewayClient) -> str:
    return client.start_run("acme", "support", "manual", "test")["id"]


def step(n: int, total: int = 100) -> TrainingProgress:
    return TrainingProgress(n, total, n / total, 0.5, float(n))


def test_a_second_run_of_a_tenant_is_refused_while_one_runs(client):
    start(client)
    with pytest.raises(RunInProgress):
        start(client)


def test_heartbeats_keep_coming_between_updates(client, gateway):
    run_id = start(client)
    with RunStatus(client, "acme", run_id, heartbeat_s=0.05):
        time.sleep(0.4)
    assert gateway.runs[run_id]["updates"] >= 4


def test_heartbeats_survive_a_gateway_blip(client, gateway):
    run_id = start(client)
    gateway.fail["PATCH"] = 503
    with RunStatus(client, "acme", run_id, heartbeat_s=0.05) as status:
        time.sleep(0.15)
        del gateway.fail["PATCH"]
        time.sleep(0.2)
        status.check()  # still ours
    assert gateway.runs[run_id]["updates"] >= 2


def test_progress_is_throttled_but_the_last_step_is_always_sent(client, gateway):
    run_id = start(client)
    with RunStatus(client, "acme", run_id, heartbeat_s=10, progress_interval_s=60) as status:
        for n in range(1, 101):
            status.progress(step(n))
    assert gateway.runs[run_id]["updates"] == 2  # the first step, then the last
    assert gateway.runs[run_id]["progress"]["step"] == 100


def test_a_lost_lease_is_noticed_by_the_heartbeat(client, gateway):
    run_id = start(client)
    with RunStatus(client, "acme", run_id, heartbeat_s=0.05) as status:
        gateway.runs[run_id].update(status="failed", reason="no heartbeat for 120 s")
        time.sleep(0.2)
        with pytest.raises(RunLost, match="already failed"):
            status.check()
        with pytest.raises(RunLost):
            status.stage("promoting")


def test_the_final_update_ends_the_run(client, gateway):
    run_id = start(client)
    with RunStatus(client, "acme", run_id, heartbeat_s=0.05) as status:
        status.finish("rejected", "not better", {"status": "rejected"}, "# report")
    run = gateway.runs[run_id]
    assert (run["status"], run["reason"], run["report_markdown"]) == ("rejected", "not better", "# report")
    start(client)  # the lock is free again


def test_the_training_loss_so_far_goes_with_the_progress_for_the_live_plot(client, gateway):
    run_id = start(client)
    with RunStatus(client, "acme", run_id, heartbeat_s=10, progress_interval_s=60) as status:
        status.progress(TrainingProgress(0, 1000, 0.0, None, 0.0))  # the training begins: no loss yet
        for n in range(1, 1001):
            status.progress(TrainingProgress(n, 1000, n / 1000, 2.0 - n / 1000, float(n)))
        curve = gateway.runs[run_id]["progress"]["loss_curve"]
        assert len(curve) == 200 and curve[0] == [1, 1.999] and curve[-1] == [1000, 1.0]  # thinned, ends kept
        assert [step for step, _ in curve] == sorted({step for step, _ in curve})
        status.stage("evaluating")  # while the candidate is evaluated, the training's curve stays
        assert gateway.runs[run_id]["progress"] == {"loss_curve": curve}
        status.counted(10, 10, 1.0)
        assert gateway.runs[run_id]["progress"]["loss_curve"] == curve
        status.progress(TrainingProgress(0, 4, 0.0, None, 0.0))  # a training that starts again, a new curve
        status.progress(TrainingProgress(4, 4, 1.0, 0.5, 1.0))
        assert gateway.runs[run_id]["progress"]["loss_curve"] == [[4, 0.5]]
