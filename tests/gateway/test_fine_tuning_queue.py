"""The trainer's side of fine-tuning jobs, through the admin API with a fake trainer: claiming takes the tenant's
training lock and respects the limit on running jobs; reports are heartbeats and carry cancellation; a succeeded job
is a new adapter version served at once under its `ft:` name to its tenant alone; a lost trainer's job resumes from
its last checkpoint; a job's model can be promoted to an alias."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.gateway.conftest import BASE
from tests.gateway.fine_tuning_support import FakeTrainer, open_env, queued_job, sdk


def test_a_claimed_job_runs_reports_and_succeeds_and_its_model_is_served_at_once_to_its_tenant(tmp_path: Path):
    with open_env(tmp_path) as env:
        key = env.tenant_with_key("acme")
        client = sdk(env, key)
        job = queued_job(env, key, suffix="pirate")
        trainer = FakeTrainer(env, tmp_path)

        claimed = trainer.claim()
        assert claimed is not None and claimed["id"] == job.id and claimed["parent"] is None
        name = f"ft:{BASE}:acme:pirate:{job.id}"
        assert claimed["fine_tuned_model"] == name and claimed["data"]["training"]["examples"] == 3
        assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
        run = env.admin("GET", f"/tenants/acme/training-runs/{claimed['run_id']}").json()
        assert (run["status"], run["trigger"], run["adapter"]) == ("running", "fine_tuning", job.id)
        hyper = {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 1.0}
        resolved = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
        assert trainer.report(claimed, 2, method=resolved).json() == {"status": "running"}
        assert trainer.checkpoint(claimed, 2).status_code == 201
        completed = trainer.complete(claimed)
        assert completed.status_code == 200, completed.text

        done = client.fine_tuning.jobs.retrieve(job.id)
        assert (done.status, done.fine_tuned_model, done.trained_tokens) == ("succeeded", name, 123)
        assert done.hyperparameters.n_epochs == 3 and done.finished_at is not None
        assert client.files.content(done.result_files[0]).read() == b"step,train_loss\n1,1.0\n"
        assert client.files.retrieve(done.result_files[0]).purpose == "fine-tune-results"
        events = [event.message for event in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert events[:3] == ["The job has successfully completed", f"New fine-tuned model created: {name}",
                              "Checkpoint created at step 2"]  # fmt: skip
        assert any(event.type == "metrics" for event in client.fine_tuning.jobs.list_events(job.id, limit=100))
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
        assert [c.fine_tuned_model_checkpoint for c in checkpoints] == [f"{name}:ckpt-step-2"]
        # Served at once under its name, listed in /v1/models, and the run released the tenant's lock.
        reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        assert reply.model == name and reply.choices[0].message.content.startswith("answer from lf-")
        assert name in [model.id for model in client.models.list()]
        assert env.admin("GET", f"/tenants/acme/training-runs/{claimed['run_id']}").json()["status"] == "succeeded"
        # Another tenant: not found, whether it asks for the name or tries to train from it.
        other = sdk(env, env.tenant_with_key("globex"))
        with pytest.raises(openai.NotFoundError):
            other.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        assert name not in [model.id for model in other.models.list()]
        with pytest.raises(openai.NotFoundError):
            other.completions.create(model=name, prompt="hi")


def test_a_tenant_that_is_training_keeps_its_jobs_queued_while_others_run(tmp_path: Path):
    with open_env(tmp_path) as env:
        first = queued_job(env, env.tenant_with_key("acme"))
        other = queued_job(env, env.tenant_with_key("globex"))
        nightly = env.admin("POST", "/tenants/acme/training-runs", json={"adapter": "support"})  # the nightly run
        assert nightly.status_code == 201
        trainer = FakeTrainer(env, tmp_path)

        claimed = trainer.claim()

        assert claimed is not None and claimed["id"] == other.id  # acme's older job waits for its lock
        trainer.end(claimed, "failed", message="boom")
        assert trainer.claim() is None  # acme still training
        env.admin("PATCH", f"/tenants/acme/training-runs/{nightly.json()['id']}", json={"status": "skipped"})
        claimed = trainer.claim()
        assert claimed is not None and claimed["id"] == first.id
        # And while the job trains, acme's nightly run is the one that waits.
        assert env.admin("POST", "/tenants/acme/training-runs", json={"adapter": "support"}).status_code == 409


def test_no_more_jobs_than_the_limit_train_at_once(tmp_path: Path):
    with open_env(tmp_path, {"max_running_jobs": 2}) as env:
        for tenant in ("a", "b", "c"):
            queued_job(env, env.tenant_with_key(tenant))
        trainer = FakeTrainer(env, tmp_path)
        first, second = trainer.claim(), trainer.claim()
        assert first is not None and second is not None
        assert trainer.claim() is None
        trainer.end(first, "failed", message="boom")
        assert trainer.claim() is not None


def test_cancelling_a_running_job_is_seen_at_its_next_report_and_the_lock_holds_until_the_trainer_stops(
    tmp_path: Path,
):
    with open_env(tmp_path) as env:
        key = env.tenant_with_key("acme")
        job = queued_job(env, key)
        trainer = FakeTrainer(env, tmp_path)
        claimed = trainer.claim()
        assert claimed is not None

        cancelled = sdk(env, key).fine_tuning.jobs.cancel(job.id)

        assert cancelled.status == "cancelled"
        assert trainer.report(claimed, 3).json() == {"status": "cancelled"}
        assert env.admin("POST", "/tenants/acme/training-runs", json={"adapter": "x"}).status_code == 409
        assert trainer.complete(claimed).status_code == 409  # its model is not kept
        assert trainer.end(claimed, "cancelled").json()["status"] == "cancelled"
        run = env.admin("GET", f"/tenants/acme/training-runs/{claimed['run_id']}").json()
        assert run["status"] == "cancelled"
        assert env.admin("POST", "/tenants/acme/training-runs", json={"adapter": "x"}).status_code == 201


def test_a_lost_trainers_job_is_queued_again_and_resumes_from_its_last_checkpoint(tmp_path: Path):
    with open_env(tmp_path, {"max_attempts": 2}) as env:
        env.settings.training.lease_s = 2.0  # long enough for the reports below under load, short for the test
        key = env.tenant_with_key("acme")
        job = queued_job(env, key)
        trainer = FakeTrainer(env, tmp_path)
        claimed = trainer.claim()
        assert claimed is not None and claimed["resume_from"] is None
        trainer.report(claimed, 2)
        checkpoint = trainer.checkpoint(claimed, 2).json()

        requeued = _wait(lambda: sdk(env, key).fine_tuning.jobs.retrieve(job.id).status == "queued")

        assert requeued
        event = sdk(env, key).fine_tuning.jobs.list_events(job.id, limit=1).data[0]
        assert event.level == "warn" and "resumes from the checkpoint at step 2" in event.message
        assert trainer.report(claimed, 3).status_code == 409  # the lost trainer, if it wakes up, must stop
        again = trainer.claim()
        assert again is not None and again["attempt"] == 2
        assert again["resume_from"]["id"] == checkpoint["id"] and again["resume_from"]["step_number"] == 2
        archive = env.admin("GET", f"/fine-tuning/jobs/{job.id}/checkpoints/{checkpoint['id']}/archive")
        assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"
        # Lost again, past max_attempts: the job fails, saying why.
        failed = _wait(lambda: sdk(env, key).fine_tuning.jobs.retrieve(job.id).status == "failed")
        assert failed
        error = sdk(env, key).fine_tuning.jobs.retrieve(job.id).error
        assert error is not None and error.code == "trainer_lost" and "2 times" in error.message


def test_a_trainer_that_stops_cleanly_hands_its_job_back_at_once(tmp_path: Path):
    with open_env(tmp_path, {"max_attempts": 1}) as env:
        key = env.tenant_with_key("acme")
        job = queued_job(env, key)
        trainer = FakeTrainer(env, tmp_path)
        claimed = trainer.claim()
        assert claimed is not None

        assert trainer.end(claimed, "interrupted", message="the trainer is stopping").json()["status"] == "queued"

        again = trainer.claim()  # not counted as an attempt: max_attempts 1 still lets it run
        assert again is not None and again["id"] == job.id and again["attempt"] == 1


def test_a_trainers_failure_fails_the_job_with_its_error(tmp_path: Path):
    with open_env(tmp_path) as env:
        key = env.tenant_with_key("acme")
        job = queued_job(env, key)
        trainer = FakeTrainer(env, tmp_path)
        claimed = trainer.claim()
        assert claimed is not None
        error = {"code": "invalid_adapter", "message": "rank 64 is above 16", "param": None}
        trainer.end(claimed, "failed", error=error)
        failed = sdk(env, key).fine_tuning.jobs.retrieve(job.id)
        assert failed.status == "failed" and failed.error is not None and failed.error.code == "invalid_adapter"


def test_a_succeeded_jobs_model_is_promoted_to_an_alias_only_when_asked(tmp_path: Path):
    with open_env(tmp_path) as env:
        key = env.tenant_with_key("acme")
        job = queued_job(env, key)
        trainer = FakeTrainer(env, tmp_path)
        claimed = trainer.claim()
        assert claimed is not None
        trainer.complete(claimed)
        client = sdk(env, key)
        assert "support" not in [model.id for model in client.models.list()]

        promoted = env.admin("POST", f"/tenants/acme/fine-tuning/jobs/{job.id}/promote", json={"alias": "support"})

        assert promoted.status_code == 200, promoted.text
        assert (promoted.json()["id"], promoted.json()["state"]) == ("support@1", "production")
        assert promoted.json()["lineage"]["fine_tuning_job"] == job.id
        reply = client.chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}])
        assert reply.model == "support@1"
        staged = env.admin("POST", f"/tenants/acme/fine-tuning/jobs/{job.id}/promote",
                           json={"alias": "support", "promote": False})  # fmt: skip
        assert staged.json()["state"] == "staged"
        assert env.admin("GET", "/tenants/acme/adapters/support").json()["production"] == "support@1"


def test_a_job_that_has_not_succeeded_cannot_be_promoted(tmp_path: Path):
    with open_env(tmp_path) as env:
        job = queued_job(env, env.tenant_with_key("acme"))
        refused = env.admin("POST", f"/tenants/acme/fine-tuning/jobs/{job.id}/promote", json={"alias": "support"})
        assert refused.status_code == 400
        other = env.admin("POST", f"/tenants/globex/fine-tuning/jobs/{job.id}/promote", json={"alias": "support"})
        assert other.status_code == 404


def _wait(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
