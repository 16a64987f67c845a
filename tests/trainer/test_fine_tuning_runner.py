"""The trainer's job runner against the real gateway app (fake engine) over its admin API, with a fake recipe: it
claims a job, reports metrics events and checkpoints, hands over the adapter, and ends a job as it must: cancelled
at the next step, failed with OpenAI's error object, interrupted (queued again), or resumed from a checkpoint."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.gateway.conftest import BASE, fake_adapter
from tests.gateway.fine_tuning_support import chat_line, jsonl, open_env, queued_job, sdk, upload, wait_status
from trainer.fine_tuning import JobRunner
from trainer.gateway_client import GatewayClient
from trainer.progress import TrainingProgress
from trainer.result import TrainingResult
from trainer.settings import TrainerSettings


class ThroughTestClient(httpx.BaseTransport):
    """The trainer's HTTP client, sent through the test client of the gateway app."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.client.request(
            request.method, str(request.url), headers=request.headers, content=request.read()
        )
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)


class FakeModel:
    def save_pretrained(self, directory: str, **kwargs: Any) -> None:
        fake_adapter(Path(directory))


class FakeRecipe:
    """Four steps over two epochs (a checkpoint after the first), with the validation loss when there is some."""

    def __init__(self, steps: int = 4, during=None) -> None:
        self.steps, self.during, self.calls = steps, during, []

    def __call__(self, config, base_model, records, output_dir, *, parent_adapter=None, on_progress=None,
                 eval_records=None, callbacks=()) -> TrainingResult:  # fmt: skip
        self.calls.append(SimpleNamespace(config=config, records=records, parent=parent_adapter, eval=eval_records))
        on_progress(TrainingProgress(0, self.steps, 0.0, None, 0.0))
        for step in range(1, self.steps + 1):
            if self.during is not None:
                self.during(step)
            on_progress(TrainingProgress(step, self.steps, step / 2, 1.0 / step, step * 0.1))
            if eval_records:
                on_progress(TrainingProgress(step, self.steps, step / 2, None, step * 0.1, valid_loss=0.5 / step))
            if step == self.steps // 2:
                for callback in callbacks:
                    callback.on_epoch_end(None, SimpleNamespace(global_step=step, max_steps=self.steps, epoch=1.0),
                                          None, model=FakeModel())  # fmt: skip
        fake_adapter(Path(output_dir))
        return TrainingResult(
            method=config.method, adapter_dir=str(output_dir), base_model=str(base_model), started_from="scratch",
            dataset_hash="sha256:0", num_examples=len(records), settings=config, steps=self.steps, epochs=2.0,
            final_loss=0.25, mean_loss=0.5, tokens=321, duration_s=1.0, total_s=1.0, tokens_per_s=321.0,
            device="cpu", dtype="float32",
        )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path):
    with open_env(tmp_path) as env:
        yield env


def runner(env, tmp_path: Path, recipe: FakeRecipe, stop: threading.Event | None = None) -> JobRunner:
    settings = TrainerSettings(
        gateway_url="http://testserver", admin_key=SecretStr("test-admin-key"), var_dir=tmp_path / "trainer",
        base_model=str(tmp_path), progress_interval_s=0.05,
    )  # fmt: skip
    client = GatewayClient("http://testserver", "test-admin-key", transport=ThroughTestClient(env.client))
    return JobRunner(settings, client, stop=stop, recipe=recipe)


def test_a_job_is_trained_reported_checkpointed_and_served(env, tmp_path: Path):
    key = env.tenant_with_key("acme")
    client = sdk(env, key)
    train = upload(client, jsonl([chat_line(answer=f"A{n}") for n in range(3)]))
    valid = upload(client, jsonl([chat_line("bye")]), "valid.jsonl")
    job = client.fine_tuning.jobs.create(model=BASE, training_file=train, validation_file=valid, suffix="x",
                                         hyperparameters={"n_epochs": 2})  # fmt: skip
    wait_status(client, job.id, "queued")
    recipe = FakeRecipe()

    assert runner(env, tmp_path, recipe).run_next() == "succeeded"

    call = recipe.calls[0]
    assert (call.config.epochs, call.config.batch_size, call.config.method) == (2.0, 3, "sft")
    assert [r["messages"][-1]["content"] for r in call.records] == ["A0", "A1", "A2"] and len(call.eval) == 1
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.fine_tuned_model == f"ft:{BASE}:acme:x:{job.id}"
    assert (done.trained_tokens, done.hyperparameters.n_epochs, done.hyperparameters.batch_size) == (321, 2, 3)
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert [e.data["step"] for e in metrics][::-1] == [1, 2, 3, 4]  # type: ignore[index]
    assert metrics[0].message == "Step 4/4: training loss=0.2500, validation loss=0.1250"
    assert metrics[0].data == {"step": 4, "train_loss": 0.25, "valid_loss": 0.125, "total_steps": 4}
    [checkpoint] = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoint.step_number == 2 and checkpoint.metrics.train_loss == 0.5
    results = client.files.content(done.result_files[0]).read().decode().splitlines()
    assert results[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert results[1:] == [
        "1,1.0,,0.5,",
        "2,0.5,,0.25,",
        "3,0.3333333333333333,,0.16666666666666666,",
        "4,0.25,,0.125,",
    ]
    reply = client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    assert reply.model == done.fine_tuned_model
    assert not (tmp_path / "trainer" / "trainer" / "jobs" / job.id).exists()  # the work directory is cleaned


def test_cancelling_stops_the_training_at_its_next_step_and_keeps_nothing(env, tmp_path: Path):
    key = env.tenant_with_key("acme")
    job = queued_job(env, key)
    client = sdk(env, key)
    seen = []

    def during(step: int) -> None:
        seen.append(step)
        if step == 2:
            client.fine_tuning.jobs.cancel(job.id)
        if step > 2:
            threading.Event().wait(0.2)  # steps that take a while: the reporter's beats (every 0.05 s) see it

    assert runner(env, tmp_path, FakeRecipe(steps=50, during=during)).run_next() == "cancelled"

    assert seen[-1] < 50  # stopped before the end, at the step after it learned of it
    cancelled = client.fine_tuning.jobs.retrieve(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    runs = env.admin("GET", "/tenants/acme/training-runs").json()
    assert runs[0]["status"] == "cancelled"  # the tenant's lock is free again


def test_a_stopping_trainer_hands_the_job_back_and_the_next_claim_resumes_from_its_checkpoint(env, tmp_path: Path):
    key = env.tenant_with_key("acme")
    job = queued_job(env, key)
    stop = threading.Event()

    def during(step: int) -> None:
        if step == 3:
            stop.set()

    assert runner(env, tmp_path, FakeRecipe(during=during), stop=stop).run_next() == "interrupted"
    client = sdk(env, key)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
    recipe = FakeRecipe()

    assert runner(env, tmp_path, recipe).run_next() == "succeeded"

    assert recipe.calls[0].parent is not None and recipe.calls[0].parent.name != "parent"  # the checkpoint
    assert recipe.calls[0].config.epochs == 2.0  # 3 epochs ("auto"), one done before
    steps = [e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert max(steps) == 6  # 2 steps before the checkpoint, then 4 more
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any(m.startswith("Resuming from the checkpoint at step 2") for m in messages)


def test_a_training_error_fails_the_job_with_openais_error_object(env, tmp_path: Path):
    key = env.tenant_with_key("acme")
    job = queued_job(env, key)

    def during(step: int) -> None:
        raise RuntimeError("out of memory")

    assert runner(env, tmp_path, FakeRecipe(during=during)).run_next() == "failed"

    error = sdk(env, key).fine_tuning.jobs.retrieve(job.id).error
    assert error is not None and error.code == "training_failed" and "RuntimeError: out of memory" in error.message


def test_settings_the_engine_cannot_serve_fail_the_job_before_training(env, tmp_path: Path):
    env.admin("POST", "/tenants", json={"id": "acme", "settings": {"training": {"rank": 64}}})
    key = env.tenant_with_key("acme")
    job = queued_job(env, key)
    recipe = FakeRecipe()

    assert runner(env, tmp_path, recipe).run_next() == "failed"

    assert recipe.calls == []
    error = sdk(env, key).fine_tuning.jobs.retrieve(job.id).error
    assert error is not None and error.code == "invalid_settings" and "rank 64" in error.message


def test_nothing_queued_is_nothing_run(env, tmp_path: Path):
    assert runner(env, tmp_path, FakeRecipe()).run_until_idle() == 0


def test_the_gate_keeps_a_job_model_that_is_no_better_out_of_production(env, tmp_path: Path):
    from trainer.fine_tuning_gate import gate_job

    env.admin("POST", "/tenants", json={"id": "acme", "settings": {"evaluation": {"gate": {"min_items": 2}}}})
    key = env.tenant_with_key("acme")
    client = sdk(env, key)
    train = upload(client, jsonl([chat_line()] * 3))
    valid = upload(client, jsonl([chat_line(f"q{n}") for n in range(4)]), "valid.jsonl")
    job = client.fine_tuning.jobs.create(model=BASE, training_file=train, validation_file=valid)
    wait_status(client, job.id, "queued")
    gateway = runner(env, tmp_path, FakeRecipe())
    assert gateway.run_next() == "succeeded"

    outcome = gate_job(gateway.client, "acme", job.id, "support")

    # The fake engine answers "answer from <model>": neither model gets the 4 validation answers right.
    assert outcome.decision.decision == "reject" and outcome.candidate == "support@1" and outcome.incumbent == BASE
    alias = env.admin("GET", "/tenants/acme/adapters/support").json()
    assert alias["production"] is None and alias["versions"][0]["state"] == "retired"
    active = [key["name"] for key in env.admin("GET", "/tenants/acme/keys").json() if key["revoked_at"] is None]
    assert active == ["test"]  # the gate's evaluation key is revoked
