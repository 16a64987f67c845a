"""OpenAI's fine-tuning API end to end: the official client against the real gateway and a real vLLM, jobs trained by
the trainer's job runner (real recipes, the tiny model) that reaches the gateway over HTTP only.

A chat file teaches a visible behaviour and the job's `ft:` model answers as trained; a DPO job makes its model
prefer the preferred answers; a running job is cancelled; a malformed file fails naming its line; another tenant
finds nothing; a file a running job reads cannot be deleted; a trainer killed mid-job loses nothing (the job resumes
from its last checkpoint under another trainer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import SecretStr
from transformers import AutoTokenizer

from tests.e2e.adapters import constant_examples
from tests.e2e.stack import ADMIN_KEY, BASE_NAME
from trainer.fine_tuning import JobRunner
from trainer.fine_tuning_gate import gate_job
from trainer.gateway_client import GatewayClient, GatewayError
from trainer.settings import TrainerSettings

pytestmark = pytest.mark.e2e
QUICK = {"training": {"cpu_threads": 1, "rank": 8, "alpha": 16}}  # one torch thread: the engine has the other core
PROMPTS = [prompt for prompt, _ in constant_examples("BRAVO")]


def chat_file(word: str, n: int = 64) -> bytes:
    lines = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]}
             for p, a in constant_examples(word)[:n]]  # fmt: skip
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def preference_file(preferred: str, other: str, n: int = 32) -> bytes:
    lines = [
        {"input": {"messages": [{"role": "user", "content": prompt}]},
         "preferred_output": [{"role": "assistant", "content": preferred}],
         "non_preferred_output": [{"role": "assistant", "content": other}]}
        for prompt in PROMPTS[:n]
    ]  # fmt: skip
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def trainer_settings(gateway, tiny_model: Path, var_dir: Path) -> TrainerSettings:
    return TrainerSettings(
        gateway_url=gateway.url, admin_key=SecretStr(ADMIN_KEY), database_url=gateway.settings.sqlalchemy_url,
        var_dir=var_dir, base_model=str(tiny_model), heartbeat_s=2, progress_interval_s=0.5,
    )  # fmt: skip


@pytest.fixture
def trainer(gateway, tiny_model: Path, tmp_path: Path) -> Iterator[JobRunner]:
    """The trainer's job runner, claiming and running jobs in a thread of this process, over HTTP."""
    stop = threading.Event()
    client = GatewayClient(gateway.url, ADMIN_KEY)
    runner = JobRunner(trainer_settings(gateway, tiny_model, tmp_path / "trainer"), client, stop=stop)

    def loop() -> None:
        while not stop.wait(0.2):
            try:
                runner.run_until_idle()
            except GatewayError as error:  # as the scheduler does: ask again at the next poll
                print(f"job runner: {error}")

    thread = threading.Thread(target=loop, name="job runner", daemon=True)
    thread.start()
    yield runner
    stop.set()
    thread.join(120)
    client.close()


def tenant(gateway, tenant_id: str, **settings) -> openai.OpenAI:
    body = {"id": tenant_id, "settings": {**QUICK, **settings}}
    assert gateway.admin("POST", "/tenants", json=body).status_code == 201
    return gateway.client(gateway.tenant(tenant_id))


def upload(client: openai.OpenAI, content: bytes, name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, content), purpose="fine-tune").id


def wait(
    client: openai.OpenAI, job_id: str, *statuses: str, timeout_s: float = 300
) -> openai.types.fine_tuning.FineTuningJob:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"{job_id} still {job.status} after {timeout_s:.0f} s"
        time.sleep(0.5)


def answer(client: openai.OpenAI, model: str, prompt: str = "hello") -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=5
    )
    return reply.choices[0].message.content or ""


def test_a_chat_file_teaches_the_model_and_its_ft_name_answers_as_trained_to_its_tenant_alone(gateway, trainer):
    client = tenant(gateway, "ft-teach", evaluation={"max_tokens": 16, "gate": {"min_items": 5}})
    other = tenant(gateway, "ft-other")
    training, validation = upload(client, chat_file("BRAVO")), upload(client, chat_file("BRAVO", 8), "valid.jsonl")
    assert answer(client, BASE_NAME).strip() != "BRAVO"

    job = client.fine_tuning.jobs.create(
        model=BASE_NAME, training_file=training, validation_file=validation, suffix="bravo", seed=1,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 8,
                                                                         "learning_rate_multiplier": 2.0}}},
    )  # type: ignore[arg-type]  # fmt: skip
    done = wait(client, job.id, "succeeded", "failed")

    assert done.status == "succeeded", done.error
    name = f"ft:{BASE_NAME}:ft-teach:bravo:{job.id}"
    assert done.fine_tuned_model == name and done.trained_tokens and done.finished_at
    events = client.fine_tuning.jobs.list_events(job.id, limit=200).data
    metrics = [event for event in events if event.type == "metrics"]
    assert metrics and all("train_loss" in (event.data or {}) for event in metrics)
    assert any("valid_loss" in (event.data or {}) for event in metrics)
    losses = [event.data["train_loss"] for event in reversed(metrics)]  # type: ignore[index]
    assert losses[-1] < losses[0]
    messages = [event.message for event in reversed(events)]
    expected_events = (
        "Created fine-tuning job", "Validating training file", "Files validated", "Fine-tuning job started",
        "Checkpoint created", "New fine-tuned model created", "The job has successfully completed",
    )  # fmt: skip
    for expected in expected_events:
        assert any(message.startswith(expected) for message in messages), expected
    assert len(client.fine_tuning.jobs.checkpoints.list(job.id).data) == 3  # after epochs 1, 2 and 3
    results = client.files.content(done.result_files[0]).read().decode().splitlines()
    assert results[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy" and len(results) > 3

    # Served at once, in chat and text completions, listed in /v1/models: to this tenant only.
    assert answer(client, name).strip() == "BRAVO"
    assert answer(client, name, "what is the capital of France").strip() == "BRAVO"
    assert client.completions.create(model=name, prompt="hello", max_tokens=3).model == name
    assert name in [model.id for model in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(model=name, messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(training)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.create(model=name, training_file=upload(other, chat_file("ALPHA", 10)))

    # Promoting it to one of the tenant's aliases is its own step: at once, or through the evaluation gate (the
    # job's validation answers: the base model gets none of them, the job's model all).
    promoted = gateway.admin("POST", f"/tenants/ft-teach/fine-tuning/jobs/{job.id}/promote", json={"alias": "support"})
    assert promoted.status_code == 200 and promoted.json()["state"] == "production"
    assert answer(client, "support").strip() == "BRAVO"
    with GatewayClient(gateway.url, ADMIN_KEY) as admin:
        gated = gate_job(admin, "ft-teach", job.id, "gated")
    assert gated.decision.decision == "promote", gated.decision.reason
    assert (gated.candidate, gated.incumbent) == ("gated@1", BASE_NAME)
    assert answer(client, "gated").strip() == "BRAVO"


def test_a_dpo_job_makes_its_model_prefer_the_preferred_answers(gateway, trainer, tiny_model: Path):
    client = tenant(gateway, "ft-dpo")
    method = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 3, "batch_size": 4, "beta": 0.1,
                                                        "learning_rate_multiplier": 5.0}}}  # fmt: skip
    job = client.fine_tuning.jobs.create(
        model=BASE_NAME,
        training_file=upload(client, preference_file("ALPHA", "BRAVO")),
        method=method,  # type: ignore[arg-type]
    )

    done = wait(client, job.id, "succeeded", "failed")

    assert done.status == "succeeded", done.error
    assert done.method.type == "dpo" and done.method.dpo and done.method.dpo.hyperparameters
    assert done.method.dpo.hyperparameters.beta == 0.1
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompts = PROMPTS[:6]
    before = [margin(client, tokenizer, BASE_NAME, prompt) for prompt in prompts]
    after = [margin(client, tokenizer, str(done.fine_tuned_model), prompt) for prompt in prompts]
    assert all(a > 0 for a in after), after  # log p(ALPHA) > log p(BRAVO) for every prompt, as served by vLLM
    assert sum(after) > sum(before) + len(prompts)


def margin(client: openai.OpenAI, tokenizer, model: str, prompt: str) -> float:
    """log p("ALPHA") - log p("BRAVO") as the answer to `prompt`, scored by the engine (echoed prompt logprobs)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    scores = []
    for word in ("ALPHA", "BRAVO"):
        answer_tokens = len(tokenizer(text + word)["input_ids"]) - len(tokenizer(text)["input_ids"])
        reply = client.completions.create(model=model, prompt=text + word, max_tokens=1, echo=True, logprobs=0,
                                          temperature=0)  # fmt: skip
        logprobs = reply.choices[0].logprobs
        assert logprobs is not None and logprobs.token_logprobs is not None
        # The prompt's tokens, then the one generated: the answer is the last prompt tokens.
        scores.append(sum(lp or 0.0 for lp in logprobs.token_logprobs[-answer_tokens - 1 : -1]))
    return scores[0] - scores[1]


def test_a_running_job_is_cancelled_at_its_next_step_and_its_file_cannot_be_deleted_meanwhile(gateway, trainer):
    client = tenant(gateway, "ft-cancel")
    training = upload(client, chat_file("ALPHA"))
    job = client.fine_tuning.jobs.create(model=BASE_NAME, training_file=training, hyperparameters={"n_epochs": 50})
    wait(client, job.id, "running")
    deadline = time.monotonic() + 120
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=20)):
        assert time.monotonic() < deadline, "no metrics event"
        time.sleep(0.5)

    with pytest.raises(openai.ConflictError):
        client.files.delete(training)  # refused while the job reads it
    cancelled = client.fine_tuning.jobs.cancel(job.id)

    assert cancelled.status == "cancelled"
    run = wait_run(gateway, "ft-cancel", lambda run: run["status"] != "running", 30)  # the trainer stopped
    assert run["status"] == "cancelled" and run["adapter"] == job.id
    final = client.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "cancelled" and final.fine_tuned_model is None
    assert gateway.admin("GET", f"/tenants/ft-cancel/adapters/{job.id}").status_code == 404  # nothing registered
    assert client.files.delete(training).deleted


def test_a_malformed_file_fails_the_job_naming_the_line(gateway):
    client = tenant(gateway, "ft-bad")
    lines = chat_file("ALPHA", 12).decode().splitlines()
    lines[6] = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "weight": 3,
                                                                           "content": "x"}]})  # fmt: skip
    job = client.fine_tuning.jobs.create(model=BASE_NAME, training_file=upload(client, "\n".join(lines).encode()))

    failed = wait(client, job.id, "failed", timeout_s=30)

    assert failed.error is not None
    assert (failed.error.code, failed.error.param) == ("invalid_training_file", "training_file")
    assert "line 7: message 2: `weight` must be 0 or 1" in failed.error.message


def test_a_trainer_killed_mid_job_loses_nothing_and_another_resumes_from_the_last_checkpoint(
    gateway, tiny_model: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(gateway.settings.training, "lease_s", 6.0)  # the gateway reads it per request
    client = tenant(gateway, "ft-kill")
    job = client.fine_tuning.jobs.create(
        model=BASE_NAME, training_file=upload(client, chat_file("BRAVO")), hyperparameters={"n_epochs": 4}
    )
    wait(client, job.id, "queued", timeout_s=30)
    env = {
        **os.environ,
        "LORAFLOW_GATEWAY_URL": gateway.url, "LORAFLOW_ADMIN_KEY": ADMIN_KEY,
        "LORAFLOW_DATABASE_URL": gateway.settings.sqlalchemy_url, "LORAFLOW_VAR_DIR": str(tmp_path / "killed"),
        "LORAFLOW_BASE_MODEL": str(tiny_model), "LORAFLOW_SCHEDULER__FINE_TUNING_POLL_S": "0.5",
        "LORAFLOW_SCHEDULER__SYNC_INTERVAL_S": "3600", "LORAFLOW_SCHEDULER__TABLE": "ft_kill_schedule",
        "LORAFLOW_HEARTBEAT_S": "1", "LORAFLOW_PROGRESS_INTERVAL_S": "0.5",
    }  # fmt: skip
    scheduler = subprocess.Popen([sys.executable, "-m", "gateway.cli", "scheduler"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not client.fine_tuning.jobs.checkpoints.list(job.id).data:
            assert time.monotonic() < deadline and scheduler.poll() is None, "no checkpoint from the trainer"
            time.sleep(0.3)
    finally:
        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait(10)
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[0]

    queued = wait(client, job.id, "queued", timeout_s=60)  # after the lease, the gateway queues it again
    assert queued.status == "queued"
    second = trainer_settings(gateway, tiny_model, tmp_path / "second")
    with GatewayClient(gateway.url, ADMIN_KEY) as admin:
        assert JobRunner(second, admin).run_next() == "succeeded"

    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded"
    messages = [event.message for event in client.fine_tuning.jobs.list_events(job.id, limit=200)]
    assert any("queued again: the trainer running it stopped sending heartbeats" in m for m in messages)
    assert any(m.startswith(f"Resuming from the checkpoint at step {checkpoint.step_number}") for m in messages)
    assert answer(client, str(done.fine_tuned_model)).strip() == "BRAVO"


def wait_run(gateway, tenant_id: str, condition, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = gateway.admin("GET", f"/tenants/{tenant_id}/training-runs").json()
        if runs and condition(runs[0]):
            return runs[0]
        assert time.monotonic() < deadline, f"no run of {tenant_id} matched; last: {runs[:1]}"
        time.sleep(0.2)
