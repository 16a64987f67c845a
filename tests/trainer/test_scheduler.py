"""The schedule: jobs synced from tenant settings into a persisted job store, and two schedulers on one database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import SecretStr

from tests.trainer.fake_gateway import FakeGateway
from trainer import scheduler
from trainer.cycle import Outcome
from trainer.gateway_client import GatewayClient
from trainer.settings import TrainerSettings


@pytest.fixture
def gateway() -> FakeGateway:
    fake = FakeGateway()
    fake.add_tenant("acme", {"schedule": {"cron": "30 2 * * *", "timezone": "Europe/Paris"}})
    fake.add_alias("acme", "support")
    fake.add_alias("acme", "billing")
    fake.add_tenant("globex")  # no schedule setting: nightly, UTC, every alias
    fake.add_alias("globex", "support")
    fake.add_tenant("initech", {"schedule": {"enabled": False}})
    fake.add_alias("initech", "support")
    return fake


@pytest.fixture
def settings(tmp_path: Path) -> TrainerSettings:
    return TrainerSettings(
        gateway_url="http://gateway.test", admin_key=SecretStr("admin"), var_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
    )  # fmt: skip


@pytest.fixture
def started(settings: TrainerSettings, gateway: FakeGateway):
    """Schedulers on the settings' database, started paused (jobs are stored, nothing fires)."""
    made = []

    def start(paused: bool = True) -> BackgroundScheduler:
        client = GatewayClient(settings.url, "admin", transport=gateway.transport())
        jobs = scheduler.build(settings, client, BackgroundScheduler)
        jobs.remove_job("sync", jobstore="memory")  # the tests sync by hand
        jobs.start(paused=paused)
        made.append((jobs, client))
        return jobs

    yield start
    for jobs, client in made:
        if jobs.running:
            jobs.shutdown(wait=True)
        client.close()


def sync(jobs, gateway: FakeGateway):
    with GatewayClient("http://gateway.test", "admin", transport=gateway.transport()) as client:
        return scheduler.sync(jobs, client, misfire_grace_s=3600)


def persisted(jobs) -> dict:
    return {job.id: job for job in jobs.get_jobs(jobstore=scheduler.PERSISTED)}


def test_one_cron_job_per_tenant_and_alias_in_the_tenant_time_zone(started, gateway):
    jobs = started()
    result = sync(jobs, gateway)

    found = persisted(jobs)
    assert sorted(found) == ["train:acme:billing", "train:acme:support", "train:globex:support"]
    assert sorted(result.added) == sorted(found)
    acme = found["train:acme:support"]
    assert str(acme.trigger.timezone) == "Europe/Paris" and "hour='2', minute='30'" in str(acme.trigger)
    globex = found["train:globex:support"]
    assert str(globex.trigger.timezone) == "UTC" and "hour='3', minute='0'" in str(globex.trigger)
    assert acme.coalesce is True and acme.misfire_grace_time == 3600 and acme.max_instances == 1
    assert acme.args == ("acme", "support") and acme.func is scheduler.run_job


def test_sync_follows_added_changed_and_removed_settings(started, gateway):
    jobs = started()
    sync(jobs, gateway)
    gateway.tenants["acme"]["settings"]["schedule"] = {"cron": "0 4 * * 1", "adapters": ["support"]}
    gateway.add_tenant("hooli", {"schedule": {"timezone": "Asia/Tokyo"}})
    gateway.add_alias("hooli", "support")

    result = sync(jobs, gateway)

    assert result.added == ["train:hooli:support"]
    assert result.changed == ["train:acme:support"] and result.removed == ["train:acme:billing"]
    assert "day_of_week='1', hour='4'" in str(persisted(jobs)["train:acme:support"].trigger)
    assert sync(jobs, gateway).added == sync(jobs, gateway).changed == []  # settled


def test_an_unreadable_schedule_keeps_the_tenant_jobs(started, gateway):
    jobs = started()
    sync(jobs, gateway)
    gateway.tenants["acme"]["settings"]["schedule"] = {"cron": "every night"}
    result = sync(jobs, gateway)
    assert result.removed == [] and "train:acme:support" in persisted(jobs)


def test_jobs_survive_a_restart_of_the_scheduler(started, gateway, settings):
    first = started()
    sync(first, gateway)
    next_run = persisted(first)["train:acme:support"].next_run_time
    first.shutdown()
    second = started()
    assert persisted(second)["train:acme:support"].next_run_time == next_run


def test_two_schedulers_on_one_database_keep_one_job_each(started, gateway):
    first, second = started(), started()
    sync(first, gateway)
    sync(second, gateway)
    assert sorted(persisted(first)) == sorted(persisted(second))
    assert len(persisted(first)) == 3


class SlowCycle:
    """Stands in for a cycle: takes the gateway's run lock like the real one, then trains for a while."""

    def __init__(self, client: GatewayClient, seconds: float) -> None:
        self.client, self.seconds = client, seconds

    def run(self, tenant: str, alias: str, *, trigger: str) -> Outcome:
        from trainer.gateway_client import RunInProgress

        try:
            run = self.client.start_run(tenant, alias, trigger, f"{threading.get_ident()}")
        except RunInProgress as error:
            return Outcome("locked", error.message)
        time.sleep(self.seconds)
        self.client.update_run(tenant, run["id"], status="rejected", reason="done")
        return Outcome("rejected", "done", run["id"])

    def close(self) -> None:
        pass


@pytest.fixture
def recorded_jobs(gateway, monkeypatch) -> list[str]:
    """Scheduled jobs run a slow stand-in cycle against the fake gateway; their outcomes are collected."""
    outcomes: list[str] = []
    lock = threading.Lock()
    original = scheduler.run_job

    def recording(tenant, alias):
        status = original(tenant, alias)
        with lock:
            outcomes.append(status)
        return status

    client = lambda: GatewayClient("http://gateway.test", "admin", transport=gateway.transport())  # noqa: E731
    monkeypatch.setattr(scheduler, "make_cycle", lambda: SlowCycle(client(), 1.0))
    monkeypatch.setattr(scheduler, "run_job", recording)  # persisted jobs resolve it by name when loaded
    return outcomes


def test_the_job_run_by_two_schedulers_at_once_trains_once(gateway, recorded_jobs):
    # Two replicas whose clocks agree fire the same job in the same instant: the run lock admits one.
    threads = [threading.Thread(target=scheduler.run_job, args=("acme", "support")) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(recorded_jobs) == ["locked", "rejected"]
    assert len(gateway.runs_of("acme")) == 1


def test_two_schedulers_on_one_database_never_train_a_tenant_twice(started, gateway, recorded_jobs):
    first, second = started(), started()
    sync(first, gateway)
    due = datetime.now(UTC)
    first.modify_job("train:globex:support", jobstore=scheduler.PERSISTED, next_run_time=due)
    first.resume()
    second.resume()
    deadline = time.monotonic() + 10
    while not recorded_jobs and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a second firing, if any, would have started by now

    assert "rejected" in recorded_jobs and set(recorded_jobs) <= {"rejected", "locked"}
    assert len(gateway.runs_of("globex")) == 1


def test_a_due_job_runs_the_cycle_on_schedule(started, gateway, monkeypatch):
    ran = threading.Event()
    calls = []

    def run_job(tenant, alias):
        calls.append((tenant, alias))
        ran.set()

    jobs = started()
    sync(jobs, gateway)
    monkeypatch.setattr(scheduler, "run_job", run_job)  # resolved by reference when the job is loaded
    jobs.modify_job("train:globex:support", jobstore=scheduler.PERSISTED, next_run_time=datetime.now(UTC))
    jobs.resume()
    assert ran.wait(10)
    assert calls == [("globex", "support")]
    assert persisted(jobs)["train:globex:support"].next_run_time > datetime.now(UTC)  # next night
