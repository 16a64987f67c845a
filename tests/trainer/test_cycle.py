"""The cycle against a fake gateway (httpx.MockTransport) and a real record (SQLite), with a fake training recipe:
promotion, rejection, skipping, the lock, and every failure path leaving production untouched."""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.trainer.fake_gateway import BASE_NAME, FakeGateway
from tests.trainer.record_rows import make_record, rated, served
from trainer import demo_tasks
from trainer.cycle import Cycle
from trainer.gateway_client import GatewayClient
from trainer.progress import TrainingProgress
from trainer.rated_interactions import connect
from trainer.result import TrainingResult
from trainer.settings import TrainerSettings

TENANT, ALIAS = "acme", "support"
SETTINGS = {
    "evaluation": {"held_out_fraction": 0.3, "gate": {"min_items": 10, "resamples": 500}},
    "min_new_ratings": 10,
}
EXAMPLES = demo_tasks.examples("routing", 80, seed=5)
ANSWERS = {example.prompt: example.answer for example in EXAMPLES}


class FakeRecipe:
    """Writes an adapter's files and reports three steps; `fail_at` raises at that step, like a crash."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None, on_step=None) -> None:
        self.fail_at, self.error, self.on_step = fail_at, error, on_step
        self.calls: list[dict[str, Any]] = []

    def __call__(self, config, base_model, records, output_dir, *, parent_adapter=None, on_progress=None):
        records = list(records)
        self.calls.append({"config": config, "records": records, "parent": parent_adapter})
        for step in range(4):
            if on_progress is not None:
                on_progress(TrainingProgress(step, 3, step / 3, None if step == 0 else 1.0 / (step + 1), 0.1 * step))
            if self.on_step is not None:
                self.on_step(step)
            if step == self.fail_at:
                raise self.error or RuntimeError("CUDA out of memory")
        output = Path(output_dir)
        output.mkdir(parents=True)
        (output / "adapter_config.json").write_text(json.dumps({"r": config.rank}))
        (output / "adapter_model.safetensors").write_bytes(b"weights")
        return TrainingResult(
            method=config.method, adapter_dir=str(output), base_model=str(base_model),
            parent_adapter=str(parent_adapter) if parent_adapter else None,
            started_from="parent" if parent_adapter else "scratch", dataset_hash="sha256:x",
            num_examples=len(records), settings=config, steps=3, epochs=1.0, final_loss=0.25, mean_loss=0.5,
            tokens=100, duration_s=0.1, total_s=0.2, tokens_per_s=1000.0, device="cpu", dtype="float32",
        )  # fmt: skip


def knows_the_task(candidates: tuple[str, ...] = ("support@1", "support@2", "support@3")):
    """Replies: the named versions answer right, anything else answers gibberish."""

    def answer(model: str, messages: list[dict[str, Any]]) -> str:
        return ANSWERS.get(messages[-1]["content"], "?") if model in candidates else "gibberish"

    return answer


@pytest.fixture(scope="module")
def record_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 routing tickets answered wrong by the base model, each rated down by its user with the right label as
    correction."""
    path = tmp_path_factory.mktemp("record") / "record.db"
    engine = make_record(path)
    for n, example in enumerate(EXAMPLES):
        interaction_id = served(engine, example.prompt, "gibberish", version=None)
        rated(engine, interaction_id, "down", correction=example.answer, user=f"user-{n}")
    engine.dispose()
    return path


@pytest.fixture
def record_db(record_template: Path, tmp_path: Path):
    shutil.copy(record_template, tmp_path / "record.db")
    engine = connect(f"sqlite:///{tmp_path / 'record.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def gateway() -> FakeGateway:
    fake = FakeGateway(answer=knows_the_task())
    fake.add_tenant(TENANT, copy.deepcopy(SETTINGS))
    fake.add_alias(TENANT, ALIAS)
    return fake


@pytest.fixture
def make_cycle(tmp_path: Path, record_db, gateway: FakeGateway):
    made: list[Cycle] = []

    def make(recipe=None, **settings) -> Cycle:
        trainer_settings = TrainerSettings(
            gateway_url="http://gateway.test", admin_key=SecretStr("admin"), var_dir=tmp_path / "var",
            database_url="sqlite://", base_model=str(tmp_path / "base"), heartbeat_s=0.05, progress_interval_s=0,
            **settings,
        )  # fmt: skip
        client = GatewayClient(trainer_settings.url, "admin", transport=gateway.transport())
        cycle = Cycle(trainer_settings, client, engine=record_db, recipe=recipe or FakeRecipe())
        made.append(cycle)
        return cycle

    yield make
    for cycle in made:
        cycle.client.close()


def the_run(gateway: FakeGateway) -> dict[str, Any]:
    (run,) = gateway.runs_of(TENANT)
    return run


def test_a_candidate_that_beats_the_base_model_is_promoted(make_cycle, gateway):
    outcome = make_cycle().run(TENANT, ALIAS, trigger="schedule")

    assert outcome.status == "promoted", outcome.reason
    assert gateway.production(TENANT, ALIAS) == "support@1"
    run = the_run(gateway)
    assert run["status"] == "promoted" and run["candidate"] == "support@1" and run["trigger"] == "schedule"
    assert run["report"]["decision"]["incumbent"] == "base" and "beats base" in run["reason"]
    assert "# acme / support: promoted" in run["report_markdown"]
    version = gateway.versions[(TENANT, ALIAS)][0]
    assert version.state == "production" and version.files == ["adapter/adapter_config.json",
                                                                 "adapter/adapter_model.safetensors"]  # fmt: skip
    assert run["id"] in version.lineage["promotion_reason"]


def test_the_candidate_is_registered_with_its_lineage(make_cycle, gateway):
    make_cycle().run(TENANT, ALIAS)
    lineage = gateway.versions[(TENANT, ALIAS)][0].lineage
    assert lineage["parent"] is None and lineage["incumbent"] is None
    assert lineage["dataset_hash"].startswith("sha256:")
    assert lineage["examples"]["corrections"] == 80 and lineage["examples"]["train"] > 40
    assert lineage["training_loss"] == {"final": 0.25, "mean": 0.5}
    assert lineage["settings"]["rank"] == 16 and lineage["base_model"].endswith("base")
    assert lineage["run_id"] == the_run(gateway)["id"]


def test_evaluation_goes_through_an_unrecorded_key_that_is_revoked_after(make_cycle, gateway):
    make_cycle().run(TENANT, ALIAS)
    (key,) = gateway.keys.values()
    assert key["record"] is False and key["revoked"] is True
    models = {model for _, model in gateway.completions}
    assert models == {"support@1", BASE_NAME}  # the candidate pinned, against the base model's public name
    held_out = the_run(gateway)["report"]["data"]["held_out"]
    assert len(gateway.completions) == 2 * held_out


def test_the_candidate_is_staged_before_it_is_evaluated(make_cycle, gateway):
    asked_at: list[int] = []  # where, among the gateway's calls, each question to the candidate came
    answer = gateway.answer

    def spy(model, messages):
        if model == "support@1":
            asked_at.append(len(gateway.calls))
        return answer(model, messages)

    gateway.answer = spy
    make_cycle().run(TENANT, ALIAS)
    stage = gateway.calls.index(f"POST /admin/tenants/{TENANT}/adapters/{ALIAS}/versions/1/stage")
    assert asked_at and stage < min(asked_at)


def test_the_incumbent_answers_while_the_candidate_trains(make_cycle, gateway):
    """The base model's answers do not depend on the candidate: the engine gives them during training, once."""
    asked_in_training: list[int] = []

    def on_step(step: int) -> None:
        if step == 3:  # training waits here until the incumbent has been asked: it is asked now, not after
            deadline = time.monotonic() + 10
            while not any(model == BASE_NAME for _, model in gateway.completions):
                assert time.monotonic() < deadline, "the incumbent was not asked during training"
                time.sleep(0.01)
            asked_in_training.append(step)

    outcome = make_cycle(recipe=FakeRecipe(on_step=on_step)).run(TENANT, ALIAS)
    assert outcome.status == "promoted", outcome.reason
    assert asked_in_training == [3]
    held_out = the_run(gateway)["report"]["data"]["held_out"]
    assert sum(model == BASE_NAME for _, model in gateway.completions) == held_out  # each item asked once
    assert any("asked while the candidate trained" in note for note in outcome.report.notes)


def test_progress_and_stages_reach_the_run(make_cycle, gateway):
    seen: list[tuple[str, dict]] = []
    original = gateway.handle

    def spy(request):
        if request.method == "PATCH":
            seen.append(json.loads(request.content))
        return original(request)

    gateway.handle = spy  # type: ignore[method-assign]
    make_cycle().run(TENANT, ALIAS)
    stages = [body["stage"] for body in seen if "stage" in body]
    assert stages[:7] == ["preparing", "dataset", "checking", "training", "registering", "staging", "evaluating"]
    last_step = [body["progress"] for body in seen if (body.get("progress") or {}).get("step") == 3]
    assert last_step[0] == {"step": 3, "total_steps": 3, "epoch": 1.0, "loss": 0.25, "elapsed_s": 0.3,
                            "loss_curve": [[1, 0.5], [2, 0.33333], [3, 0.25]]}  # fmt: skip
    assert seen[-1]["status"] == "promoted"


def test_a_candidate_no_better_than_production_is_rejected_and_retired(make_cycle, gateway):
    gateway.add_alias(TENANT, ALIAS, production=1)
    gateway.answer = knows_the_task(candidates=("support@1", "support@2"))  # production is as good

    outcome = make_cycle().run(TENANT, ALIAS)

    assert outcome.status == "rejected" and "not better than production" in outcome.reason
    assert gateway.production(TENANT, ALIAS) == "support@1"
    assert gateway.versions[(TENANT, ALIAS)][1].state == "retired"
    assert the_run(gateway)["reason"] == outcome.reason


def test_golden_regressions_reject_a_candidate_that_wins_on_held_out(make_cycle, gateway):
    gateway.add_alias(TENANT, ALIAS, production=1)
    golden = [demo_tasks.examples("routing", 5, seed=77)[i] for i in range(5)]
    gateway.golden[(TENANT, ALIAS)] = "".join(
        json.dumps({"input": e.prompt, "expected": e.answer, "scorer": "exact"}) + "\n" for e in golden
    )
    golden_answers = {e.prompt: e.answer for e in golden}

    def answer(model, messages):
        prompt = messages[-1]["content"]
        if prompt in golden_answers:  # production knows the golden items; the candidate forgot them
            return golden_answers[prompt] if model == "support@1" else "gibberish"
        return ANSWERS.get(prompt, "?") if model == "support@2" else "gibberish"

    gateway.answer = answer
    outcome = make_cycle().run(TENANT, ALIAS)

    assert outcome.status == "rejected" and "5 of 5 golden items regress" in outcome.reason
    assert gateway.production(TENANT, ALIAS) == "support@1"
    assert "## Golden regressions" in the_run(gateway)["report_markdown"]


def test_too_little_new_feedback_skips_the_run_without_training(make_cycle, gateway):
    gateway.tenants[TENANT]["settings"]["min_new_ratings"] = 500
    recipe = FakeRecipe()
    outcome = make_cycle(recipe).run(TENANT, ALIAS)

    assert outcome.status == "skipped" and "80 new ratings so far; at least 500 are needed" in outcome.reason
    assert recipe.calls == [] and gateway.versions[(TENANT, ALIAS)] == []
    assert the_run(gateway)["report"]["data"]["new_since_last_run"] == 80


def test_new_ratings_are_counted_since_the_last_finished_run(make_cycle, gateway, record_db):
    assert make_cycle().run(TENANT, ALIAS).status == "promoted"
    example = demo_tasks.examples("routing", 1, seed=9)[0]
    rated(record_db, served(record_db, example.prompt, "x"), "down", correction=example.answer)

    outcome = make_cycle().run(TENANT, ALIAS)

    assert outcome.status == "skipped" and outcome.reason.startswith("skipped: 1 new ratings since the last")
    assert make_cycle().run(TENANT, ALIAS, force=True).status in ("promoted", "rejected")


def test_too_few_held_out_items_skip_before_training(make_cycle, gateway):
    gateway.tenants[TENANT]["settings"]["evaluation"] = {"held_out_fraction": 0.01}
    recipe = FakeRecipe()
    outcome = make_cycle(recipe).run(TENANT, ALIAS)
    assert outcome.status == "skipped" and "the gate needs 20" in outcome.reason and recipe.calls == []


def test_a_tenant_already_training_is_left_alone(make_cycle, gateway):
    gateway.runs["run_other"] = {"id": "run_other", "tenant_id": TENANT, "adapter": ALIAS, "status": "running",
                                 "created_at": "2026-01-01T00:00:00+00:00", "reason": ""}  # fmt: skip
    recipe = FakeRecipe()
    outcome = make_cycle(recipe).run(TENANT, ALIAS)

    assert outcome.status == "locked" and "run_other" in outcome.reason and outcome.run_id is None
    assert recipe.calls == [] and gateway.keys == {}
    assert len(gateway.runs) == 1


def test_a_crash_in_training_fails_the_run_and_registers_nothing(make_cycle, gateway):
    outcome = make_cycle(FakeRecipe(fail_at=2)).run(TENANT, ALIAS)

    assert outcome.status == "failed"
    assert outcome.reason.startswith("failed while training: RuntimeError: CUDA out of memory")
    assert "production untouched (base model)" in outcome.reason
    assert gateway.versions[(TENANT, ALIAS)] == [] and gateway.production(TENANT, ALIAS) is None
    assert the_run(gateway)["status"] == "failed"


def test_a_failed_evaluation_retires_the_candidate_and_keeps_production(make_cycle, gateway):
    gateway.add_alias(TENANT, ALIAS, production=1)
    gateway.fail["POST /v1/chat/completions"] = 500

    outcome = make_cycle().run(TENANT, ALIAS)

    assert outcome.status == "failed" and outcome.reason.startswith("failed while evaluating")
    assert "production untouched (support@1)" in outcome.reason
    assert gateway.production(TENANT, ALIAS) == "support@1"
    assert gateway.versions[(TENANT, ALIAS)][1].state == "retired"
    assert all(key["revoked"] for key in gateway.keys.values())
    assert "POST /admin/tenants/acme/adapters/support/promote" not in gateway.calls


def test_a_refused_upload_fails_the_run(make_cycle, gateway):
    gateway.fail["POST /admin/tenants/acme/adapters/support/versions$"] = 422
    outcome = make_cycle().run(TENANT, ALIAS)
    assert outcome.status == "failed" and outcome.reason.startswith("failed while registering: GatewayError")
    assert gateway.production(TENANT, ALIAS) is None


def test_settings_the_engine_cannot_serve_fail_before_training(make_cycle, gateway):
    gateway.tenants[TENANT]["settings"]["training"] = {"rank": 64}
    recipe = FakeRecipe()
    outcome = make_cycle(recipe).run(TENANT, ALIAS)
    assert outcome.status == "failed" and "rank 64 is above the engine's max LoRA rank 16" in outcome.reason
    assert recipe.calls == []


def test_bad_tenant_settings_fail_the_run_naming_the_setting(make_cycle, gateway):
    gateway.tenants[TENANT]["settings"]["evaluation"] = {"scorer": "bleu"}
    outcome = make_cycle().run(TENANT, ALIAS)
    assert outcome.status == "failed" and "evaluation: Value error, scorer 'bleu'" in outcome.reason


def test_a_run_that_lost_its_lease_stops_and_promotes_nothing(make_cycle, gateway):
    def expire(step: int) -> None:
        if step == 1:  # the gateway gave up on this run (missed heartbeats) while it trained
            run = the_run(gateway)
            run.update(status="failed", reason="the trainer stopped sending heartbeats")

    outcome = make_cycle(FakeRecipe(on_step=expire)).run(TENANT, ALIAS)

    assert outcome.status == "failed" and "RunLost" in outcome.reason
    assert gateway.versions[(TENANT, ALIAS)] == [] and gateway.production(TENANT, ALIAS) is None
    assert the_run(gateway)["reason"] == "the trainer stopped sending heartbeats"  # the gateway's word stands


def test_production_changed_during_the_run_means_no_promotion(make_cycle, gateway):
    def someone_promotes(call: str) -> None:
        if call == "POST /admin/tenants/acme/adapters/support/versions/1/stage":
            gateway.versions[(TENANT, ALIAS)].append(gateway.versions[(TENANT, ALIAS)][0].__class__(ALIAS, 2))
            gateway.aliases[(TENANT, ALIAS)]["production"] = "support@2"

    gateway.on_call = someone_promotes
    gateway.answer = knows_the_task(candidates=("support@1",))
    outcome = make_cycle().run(TENANT, ALIAS)
    assert outcome.status == "rejected" and "production changed during the run" in outcome.reason
    assert gateway.production(TENANT, ALIAS) == "support@2"


def test_a_failed_promotion_request_is_checked_against_the_gateway(make_cycle, gateway):
    def promote_then_fail(call: str) -> None:
        if call.endswith("/promote"):
            gateway.aliases[(TENANT, ALIAS)]["production"] = "support@1"  # it happened, the answer got lost

    gateway.on_call = promote_then_fail
    gateway.fail["/promote$"] = 504
    outcome = make_cycle().run(TENANT, ALIAS)
    assert outcome.status == "promoted" and "the promotion request itself failed" in outcome.reason


def test_ctrl_c_marks_the_run_failed_then_interrupts(make_cycle, gateway):
    with pytest.raises(KeyboardInterrupt):
        make_cycle(FakeRecipe(fail_at=1, error=KeyboardInterrupt())).run(TENANT, ALIAS)
    run = the_run(gateway)
    assert run["status"] == "failed" and run["reason"].startswith("failed while training: interrupted")


def test_a_stopping_trainer_ends_the_run_failed(make_cycle, gateway):
    stop = threading.Event()
    cycle = make_cycle(FakeRecipe(on_step=lambda step: stop.set() if step == 1 else None))
    cycle.stop = stop
    outcome = cycle.run(TENANT, ALIAS)
    assert outcome.status == "failed" and "the trainer is stopping" in outcome.reason


def test_heartbeats_are_sent_while_a_stage_takes_long(make_cycle, gateway):
    import time

    cycle = make_cycle(FakeRecipe(on_step=lambda step: time.sleep(0.2) if step == 1 else None))
    cycle.run(TENANT, ALIAS)
    patches = [call for call in gateway.calls if call.startswith("PATCH")]
    assert len(patches) > 8  # stages and progress alone are fewer; the rest are heartbeats


def test_continues_the_production_adapter_downloaded_from_the_gateway(make_cycle, gateway, record_db, tmp_path):
    first = make_cycle().run(TENANT, ALIAS)
    assert first.status == "promoted"

    recipe = FakeRecipe()
    gateway.answer = knows_the_task(candidates=("support@2",))
    outcome = make_cycle(recipe).run(TENANT, ALIAS, force=True)
    parent = recipe.calls[0]["parent"]
    assert parent is not None and (parent / "adapter_config.json").is_file()
    assert gateway.versions[(TENANT, ALIAS)][1].lineage["parent"] == "support@1"
    assert outcome.status == "promoted"


def test_starts_from_scratch_when_the_production_files_cannot_be_fetched(make_cycle, gateway):
    gateway.add_alias(TENANT, ALIAS, production=1)  # registered by hand: the fake has no files for it
    gateway.answer = knows_the_task(candidates=("support@2",))
    recipe = FakeRecipe()
    outcome = make_cycle(recipe).run(TENANT, ALIAS)
    assert recipe.calls[0]["parent"] is None and recipe.calls[0]["config"].start_from == "scratch"
    assert any("could not fetch the files of support@1" in note for note in outcome.report.notes)
