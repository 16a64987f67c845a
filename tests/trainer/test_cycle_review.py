"""The cycle's safe-learning endings against a fake gateway and a real record: poisoned ratings with no golden set are
held for review (the candidate staged, production unchanged, the report naming each signal); without the checks the
same ratings would have promoted; a passing candidate goes to canary when the tenant or the alias asks."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.trainer.fake_gateway import FakeGateway
from tests.trainer.record_rows import make_record, rated, served
from tests.trainer.test_cycle import FakeRecipe
from trainer import demo_tasks
from trainer.cycle import Cycle
from trainer.gateway_client import GatewayClient
from trainer.settings import TrainerSettings

TENANT, ALIAS = "acme", "support"
SETTINGS: dict[str, Any] = {
    "evaluation": {"held_out_fraction": 0.3, "gate": {"min_items": 10, "resamples": 500},
                   "regression": {"min_span_s": 0}},
    "min_new_ratings": 10,
}  # fmt: skip
TICKETS = [e for e in demo_tasks.examples("routing", 200, seed=7) if e.answer != "billing"][:70]
ANSWERS = {example.prompt: example.answer for example in TICKETS}
AGREED = TICKETS[:5]  # what several honest users approved before


def answers(model: str, messages: list[dict[str, Any]]) -> str:
    """Production answers right; the candidate learned the poison (`billing` to everything)."""
    if model == "support@1":
        return ANSWERS.get(messages[-1]["content"], "?")
    return "billing" if model == "support@2" else "gibberish"


@pytest.fixture
def gateway() -> FakeGateway:
    fake = FakeGateway(answer=answers)
    fake.add_tenant(TENANT, copy.deepcopy(SETTINGS))
    fake.add_alias(TENANT, ALIAS, production=1)
    return fake


@pytest.fixture
def poisoned(tmp_path: Path, gateway: FakeGateway):
    """History: three honest users approved production's answers to five tickets; a run trained after that. New:
    two hostile users dislike production's right answers and correct them to `billing`, on those five tickets and
    sixty more."""
    record = make_record(tmp_path / "record.db")
    for example in AGREED:
        for user in ("ann", "bob", "cy"):
            rated(record, served(record, example.prompt, example.answer), "up", user=user)
    time.sleep(0.002)
    boundary = datetime.now(UTC)
    gateway.runs["run_0000"] = {
        "id": "run_0000", "tenant_id": TENANT, "adapter": ALIAS, "status": "rejected", "trigger": "schedule",
        "runner": "", "stage": "", "progress": {}, "candidate": None, "reason": "", "finished_at": None,
        "created_at": boundary.isoformat(), "heartbeat_at": boundary.isoformat(),
    }  # fmt: skip
    time.sleep(0.002)
    for n, example in enumerate([*AGREED, *AGREED, *TICKETS[5:]]):
        interaction_id = served(record, example.prompt, example.answer)
        rated(record, interaction_id, "down", correction="billing", user=("mallory", "trudy")[n % 2])
    yield record
    record.dispose()


@pytest.fixture
def make_cycle(tmp_path: Path, gateway: FakeGateway):
    made: list[Cycle] = []

    def make(record) -> Cycle:
        settings = TrainerSettings(
            gateway_url="http://gateway.test", admin_key=SecretStr("admin"), var_dir=tmp_path / "var",
            database_url="sqlite://", base_model=str(tmp_path / "base"), heartbeat_s=0.05, progress_interval_s=0,
        )  # fmt: skip
        cycle = Cycle(settings, GatewayClient(settings.url, "admin", transport=gateway.transport()), engine=record,
                      recipe=FakeRecipe())  # fmt: skip
        made.append(cycle)
        return cycle

    yield make
    for cycle in made:
        cycle.client.close()


def test_poisoned_ratings_without_a_golden_set_are_held_for_review(make_cycle, gateway, poisoned):
    outcome = make_cycle(poisoned).run(TENANT, ALIAS)

    assert outcome.status == "held", outcome.reason
    assert outcome.reason.startswith("held for review: signal contradictions: ")
    for named in ("signal concentration", "signal drift", "breaks 5 of 5 answers users agreed on"):
        assert named in outcome.reason
    assert "the scores alone would promote" in outcome.reason  # the held-out items agree with the poison
    assert gateway.production(TENANT, ALIAS) == "support@1"  # unchanged
    assert gateway.versions[(TENANT, ALIAS)][1].state == "staged"  # kept for a person to try, pinned
    assert not any("/promote" in call or "/retire" in call for call in gateway.calls)
    run = gateway.runs[outcome.run_id]
    assert run["status"] == "held"
    signals = {signal["name"]: signal for signal in run["report"]["signals"]["checks"]}
    assert [name for name, signal in signals.items() if signal["fired"]] == ["contradictions", "concentration", "drift"]
    assert signals["contradictions"]["evidence"]["share"] == 1.0
    assert signals["concentration"]["evidence"]["raters"] == 2
    assert run["report"]["decision"]["decision"] == "hold"
    assert len(run["report"]["decision"]["regression_failures"]) == 5
    markdown = run["report_markdown"]
    assert markdown.startswith("# acme / support: held") and "## Signals" in markdown
    assert "| contradictions | **yes** |" in markdown and "## Regression set" in markdown
    assert f"loraflow train approve {outcome.run_id} --tenant acme" in markdown


def test_without_the_checks_the_same_ratings_would_have_been_promoted(make_cycle, gateway, poisoned):
    gateway.tenants[TENANT]["settings"]["signals"] = {"enabled": False}
    gateway.tenants[TENANT]["settings"]["evaluation"]["regression"] = {"enabled": False}

    outcome = make_cycle(poisoned).run(TENANT, ALIAS)

    assert outcome.status == "promoted", outcome.reason  # what the issue saw: the gate alone is fooled
    assert gateway.production(TENANT, ALIAS) == "support@2"


def test_the_next_run_counts_new_ratings_from_a_held_run(make_cycle, gateway, poisoned):
    first = make_cycle(poisoned).run(TENANT, ALIAS)
    assert first.status == "held"

    again = make_cycle(poisoned).run(TENANT, ALIAS)

    assert again.status == "skipped" and "0 new ratings since the last finished run" in again.reason


def test_a_passing_candidate_goes_to_canary_when_the_tenant_asks(make_cycle, gateway, tmp_path):
    record = make_record(tmp_path / "honest.db")
    for n, example in enumerate(TICKETS[:60]):  # production is the base model here; users correct it
        rated(record, served(record, example.prompt, "gibberish", version=None), "down", correction=example.answer,
              user=f"user-{n}")  # fmt: skip
    gateway.aliases[(TENANT, ALIAS)] = {"production": None}
    gateway.versions[(TENANT, ALIAS)] = []
    gateway.answer = lambda model, messages: ANSWERS.get(messages[-1]["content"], "?") if "@" in model else "x"
    gateway.tenants[TENANT]["settings"]["canary"] = {"enabled": True, "share": 0.2, "max_ratings": 800}

    outcome = make_cycle(record).run(TENANT, ALIAS)

    assert outcome.status == "canary", outcome.reason
    assert outcome.reason.startswith("canary: beats base")
    [canary] = gateway.canaries
    assert canary["version"] == 1 and canary["share"] == 0.2 and canary["max_ratings"] == 800
    assert canary["run_id"] == outcome.run_id and canary["on_budget"] == "rollback"
    assert gateway.production(TENANT, ALIAS) is None  # the gateway promotes it, if the users agree
    assert gateway.versions[(TENANT, ALIAS)][0].state == "staged"
    assert "canary can_1: support@1 serves 20% of support's users" in gateway.runs[outcome.run_id]["report_markdown"]
    record.dispose()


def test_an_alias_can_ask_for_a_canary_of_its_own(make_cycle, gateway, tmp_path):
    record = make_record(tmp_path / "honest.db")
    for n, example in enumerate(TICKETS[:60]):
        rated(record, served(record, example.prompt, "gibberish", version=None), "down", correction=example.answer,
              user=f"user-{n}")  # fmt: skip
    gateway.aliases[(TENANT, ALIAS)] = {"production": None, "options": {"canary": {"enabled": True, "share": 0.5}}}
    gateway.versions[(TENANT, ALIAS)] = []
    gateway.answer = lambda model, messages: ANSWERS.get(messages[-1]["content"], "?") if "@" in model else "x"

    outcome = make_cycle(record).run(TENANT, ALIAS)

    assert outcome.status == "canary" and gateway.canaries[0]["share"] == 0.5
    record.dispose()
