"""`/v1/fine_tuning/jobs` with the official client on the fake-engine gateway: creating a job checks its files in
the background (queued, or failed naming the line), hyperparameters and methods as OpenAI takes them, listing with
cursor and metadata, cancelling, and another tenant's job or adapter is not found."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from sqlalchemy import update

from gateway.store.models import FineTuningJob
from tests.gateway.conftest import BASE, fake_adapter
from tests.gateway.fine_tuning_support import (
    chat_line,
    jsonl,
    open_env,
    preference_line,
    queued_job,
    sdk,
    upload,
    wait_status,
)


def test_a_job_with_good_files_is_validated_then_queued_and_says_so_in_its_events(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        train = upload(client, jsonl([chat_line() for _ in range(3)]))
        valid = upload(client, jsonl([chat_line("bye")]), "valid.jsonl")

        job = client.fine_tuning.jobs.create(
            model=BASE, training_file=train, validation_file=valid, suffix="pirate", seed=7, metadata={"team": "a"}
        )

        assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
        assert (job.status, job.model, job.organization_id, job.seed) == ("validating_files", BASE, "acme", 7)
        assert (job.training_file, job.validation_file, job.metadata) == (train, valid, {"team": "a"})
        assert job.fine_tuned_model is None and job.finished_at is None and job.error is None
        assert job.method.type == "supervised"
        queued = wait_status(client, job.id, "queued")
        assert queued.error is None
        messages = [event.message for event in client.fine_tuning.jobs.list_events(job.id)]
        assert messages == [  # newest first
            "Files validated, moving job to queued state",
            f"Validating training file: {train} and validation file: {valid}",
            f"Created fine-tuning job: {job.id}",
        ]


def test_a_job_with_a_malformed_file_fails_naming_the_line_as_openai_does(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        bad = {"messages": [{"role": "user", "content": "hi"}, {"content": "no role"}]}
        train = upload(client, jsonl([chat_line(), chat_line(), bad]))

        job = wait_status(client, client.fine_tuning.jobs.create(model=BASE, training_file=train).id, "failed")

        assert job.error is not None
        assert (job.error.code, job.error.param) == ("invalid_training_file", "training_file")
        assert "line 3: message 2 has no `role`" in job.error.message
        assert job.finished_at is not None
        last = client.fine_tuning.jobs.list_events(job.id, limit=1).data[0]
        assert last.level == "error" and "line 3" in last.message


def test_a_bad_validation_file_names_itself(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        train = upload(client, jsonl([chat_line()] * 3))
        valid = upload(client, jsonl(["{oops"]), "valid.jsonl")
        job = client.fine_tuning.jobs.create(model=BASE, training_file=train, validation_file=valid)
        failed = wait_status(client, job.id, "failed")
        assert failed.error is not None and failed.error.param == "validation_file"
        assert "line 1: it is not valid JSON" in failed.error.message


def test_a_dpo_job_takes_preference_data_and_beta(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        train = upload(client, jsonl([preference_line()] * 3))
        method = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2}}}

        job = client.fine_tuning.jobs.create(model=BASE, training_file=train, method=method)  # type: ignore[arg-type]

        assert job.method.type == "dpo" and job.method.dpo is not None
        hyper = job.method.dpo.hyperparameters
        assert hyper is not None and (hyper.beta, hyper.n_epochs, hyper.batch_size) == (0.2, 2, "auto")
        assert wait_status(client, job.id, "queued").status == "queued"
        # A supervised job on preference data fails on line 1.
        chat = client.fine_tuning.jobs.create(model=BASE, training_file=train)
        failed = wait_status(client, chat.id, "failed")
        assert failed.error is not None and "line 1: it is in the preference format" in failed.error.message


def test_hyperparameters_are_taken_from_method_or_the_older_top_level_field(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        train = upload(client, jsonl([chat_line()] * 3))

        old = client.fine_tuning.jobs.create(
            model=BASE, training_file=train, hyperparameters={"n_epochs": 4, "learning_rate_multiplier": 0.5}
        )
        assert old.hyperparameters.n_epochs == 4 and old.hyperparameters.learning_rate_multiplier == 0.5
        assert old.hyperparameters.batch_size == "auto"
        assert old.method.supervised is not None and old.method.supervised.hyperparameters is not None
        assert old.method.supervised.hyperparameters.n_epochs == 4

        method = {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2}}}
        new = client.fine_tuning.jobs.create(model=BASE, training_file=train, method=method)  # type: ignore[arg-type]
        assert (new.hyperparameters.batch_size, new.hyperparameters.n_epochs) == (2, "auto")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"batch_size": 257}}, "hyperparameters.batch_size"),
        ({"hyperparameters": {"learning_rate_multiplier": -1}}, "hyperparameters.learning_rate_multiplier"),
        ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}}}, "method.dpo.hyperparameters.beta"),
        ({"method": {"type": "reinforcement", "reinforcement": {}}}, "method"),
        ({"suffix": "a:b"}, "suffix"),
        ({"suffix": "x" * 65}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, "integrations"),
        ({"hyperparameters": {"n_epochs": 2}, "method": {"type": "supervised",
          "supervised": {"hyperparameters": {"n_epochs": 3}}}}, "hyperparameters"),
    ],
)  # fmt: skip
def test_a_bad_request_is_a_400_naming_its_parameter_and_creates_nothing(tmp_path: Path, extra: dict, param: str):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        train = upload(client, jsonl([chat_line()] * 3))
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(model=BASE, training_file=train, extra_body=extra)
        assert refused.value.body["param"] == param  # type: ignore[index]
        assert client.fine_tuning.jobs.list().data == []


def test_a_job_continues_a_tenant_adapter_but_not_another_tenants(tmp_path: Path):
    with open_env(tmp_path) as env:
        key = env.tenant_with_key("acme", model_map={"gpt-4o-mini": "support"})
        other = sdk(env, env.tenant_with_key("globex"))
        assert env.register("acme", "support", fake_adapter(tmp_path / "a")).status_code == 201
        client = sdk(env, key)
        train = upload(client, jsonl([chat_line()] * 3))

        pinned = client.fine_tuning.jobs.create(model="support@1", training_file=train)
        mapped = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=train)  # the key's model map

        assert (pinned.model, mapped.model) == ("support@1", "gpt-4o-mini")
        with env.client.app.state.gateway.sessions() as session:  # type: ignore[attr-defined]
            parents = {job.id: job.parent for job in session.query(FineTuningJob)}
        assert parents == {pinned.id: "support@1", mapped.id: None}  # `support` has no production version yet
        other_train = upload(other, jsonl([chat_line()] * 3))
        for model in ("support", "support@1", "no-such-model"):
            with pytest.raises(openai.NotFoundError) as refused:
                other.fine_tuning.jobs.create(model=model, training_file=other_train)
            assert refused.value.code == "model_not_found"


def test_jobs_are_listed_newest_first_by_pages_and_filtered_by_metadata(tmp_path: Path):
    with open_env(tmp_path) as env:
        key = env.tenant_with_key("acme")
        client = sdk(env, key)
        train = upload(client, jsonl([chat_line()] * 3))
        made = [
            client.fine_tuning.jobs.create(model=BASE, training_file=train, metadata={"team": team} if team else None)
            for team in ("a", "b", "a", None)
        ]
        ids = [job.id for job in made]

        page = client.fine_tuning.jobs.list(limit=3)
        assert [job.id for job in page.data] == ids[:0:-1] and page.has_more
        assert [job.id for job in client.fine_tuning.jobs.list(limit=3)] == ids[::-1]  # following `after`
        assert [job.id for job in client.fine_tuning.jobs.list(metadata={"team": "a"})] == [ids[2], ids[0]]
        null = env.client.get("/v1/fine_tuning/jobs?metadata=null", headers={"Authorization": f"Bearer {key}"})
        assert [job["id"] for job in null.json()["data"]] == [ids[3]]


def test_cancelling_a_queued_job_is_final_and_cancelling_it_again_is_refused(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        job = queued_job(env, env.tenant_with_key("acme"))
        client = sdk(env, env.tenant_with_key("acme"))

        cancelled = client.fine_tuning.jobs.cancel(job.id)

        assert cancelled.status == "cancelled" and cancelled.finished_at is not None
        assert client.fine_tuning.jobs.list_events(job.id, limit=1).data[0].message == "Fine-tuning job cancelled"
        with pytest.raises(openai.BadRequestError, match="already cancelled"):
            client.fine_tuning.jobs.cancel(job.id)


def test_another_tenants_job_is_not_found_for_every_operation(tmp_path: Path):
    with open_env(tmp_path) as env:
        job = queued_job(env, env.tenant_with_key("acme"))
        other = sdk(env, env.tenant_with_key("globex"))
        jobs = other.fine_tuning.jobs
        for call in (jobs.retrieve, jobs.cancel, jobs.list_events, jobs.checkpoints.list):
            with pytest.raises(openai.NotFoundError):
                call(job.id)  # type: ignore[operator]
        assert jobs.list().data == []
        owner = sdk(env, env.tenant_with_key("acme"))
        assert owner.fine_tuning.jobs.retrieve(job.id).status == "queued"  # untouched


def test_jobs_left_validating_by_a_stopped_gateway_are_checked_when_it_starts_again(tmp_path: Path):
    with open_env(tmp_path) as env:
        job = queued_job(env, env.tenant_with_key("acme"))
        with env.client.app.state.gateway.sessions() as session:  # type: ignore[attr-defined]
            session.execute(update(FineTuningJob).values(status="validating_files"))  # as if it stopped mid-check
            session.commit()
    with open_env(tmp_path) as env:
        assert wait_status(sdk(env, env.tenant_with_key("acme")), job.id, "queued").status == "queued"
