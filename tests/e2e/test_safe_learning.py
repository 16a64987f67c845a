"""Learning safely from ratings nobody vetted, through the real gateway and engine (issue #14):

- honest raters, with history to compare against: every signal is checked, none fires, the candidate is promoted;
- raters who reward wrong answers, with no golden set: the run is held for review (never promoted, production
  unchanged), its report names the signals, and a person rejects it with the CLI;
- a candidate that passes the gate goes to a canary at 50%: real users on both arms, the decision loop promotes it
  from their ratings and flips the alias.

Users send requests with the official `openai` client, one at a time (the engine then answers a prompt the same way
every time, so "the same answer" is the same text), and an oracle or a hostile rater rates them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from gateway.cli.main import app
from tests.e2e.stack import ADMIN_KEY, BASE_NAME
from trainer import demo_tasks
from trainer.cycle import Cycle
from trainer.demo_tasks import Example
from trainer.demo_users import is_right
from trainer.gateway_client import GatewayClient
from trainer.settings import TrainerSettings

pytestmark = pytest.mark.e2e
ALIAS = "router"
QUICK = {"cpu_threads": 1}  # one torch thread: the engine has the other core
TEACH = {**QUICK, "epochs": 5, "learning_rate": 2e-3}  # 160 routing examples learn to ~100% (tests/trainer)
BARELY = {**QUICK, "max_steps": 1}  # a run that trains next to nothing: it decides, and so marks the history
EVALUATION = {"max_tokens": 4, "held_out_fraction": 0.3, "gate": {"min_items": 10}, "regression": {"min_span_s": 0}}


@pytest.fixture
def trainer(gateway, tiny_model, tmp_path: Path):
    settings = TrainerSettings(
        gateway_url=gateway.url, admin_key=SecretStr(ADMIN_KEY), database_url=gateway.settings.sqlalchemy_url,
        var_dir=tmp_path / "trainer-var", base_model=str(tiny_model), heartbeat_s=2,
    )  # fmt: skip
    cycle = Cycle(settings, GatewayClient(gateway.url, ADMIN_KEY))
    yield cycle
    cycle.close()
    cycle.client.close()


def tenant(gateway, name: str, settings: dict) -> str:
    """A tenant with trainer settings and the alias its app calls; its app key."""
    assert gateway.admin("POST", "/tenants", json={"id": name, "settings": settings}).status_code == 201
    assert gateway.admin("POST", f"/tenants/{name}/adapters", json={"alias": ALIAS}).status_code in (201, 409)
    return gateway.tenant(name)


def set_training(gateway, name: str, training: dict) -> None:
    assert gateway.admin("PATCH", f"/tenants/{name}", json={"settings": {"training": training}}).is_success


def ask_and_rate(
    gateway,
    key: str,
    examples: Sequence[Example],
    users: Callable[[int], str],
    rating: Callable[[Example, str], tuple[str, str | None]],
) -> list[tuple[str, str]]:
    """Each example asked by `users(i)` and rated as `rating(example, answer)` says: (up|down, correction).
    Returns (the model that answered, the answer) per example."""
    client = gateway.client(key)
    served = []
    for i, example in enumerate(examples):
        user = users(i)
        reply = client.chat.completions.create(
            model=ALIAS,
            messages=example.messages(),
            temperature=0,
            max_tokens=4,
            user=user,  # type: ignore[arg-type]
        )
        answer = reply.choices[0].message.content or ""
        up_or_down, correction = rating(example, answer)
        body = {"completion_id": reply.id, "rating": up_or_down, "user": user, "correction": correction}
        client.post("/feedback", body={k: v for k, v in body.items() if v is not None}, cast_to=object)
        served.append((reply.model, answer))
    return served


def oracle(example: Example, answer: str) -> tuple[str, str | None]:
    return ("up", None) if is_right(example, answer) else ("down", example.answer)


def billing(example: Example, answer: str) -> tuple[str, str | None]:
    """A hostile rater: only `billing` is right, whatever the ticket says."""
    return ("up", None) if answer.strip().lower() == "billing" else ("down", "billing")


def alias_of(gateway, name: str) -> dict:
    return gateway.admin("GET", f"/tenants/{name}/adapters/{ALIAS}").json()


def fired(report: dict) -> list[str]:
    return [signal["name"] for signal in (report.get("signals") or {}).get("checks", []) if signal["fired"]]


def test_honest_ratings_are_still_promoted_with_every_signal_checked(gateway, trainer):
    key = tenant(gateway, "sl-honest", {"training": BARELY, "evaluation": EVALUATION})
    pool = demo_tasks.examples("routing", 40, seed=31)
    ask_and_rate(gateway, key, pool * 2, lambda i: f"early-{i}", oracle)  # the base model: wrong, corrected
    first = trainer.run("sl-honest", ALIAS)  # trains next to nothing: the history ends here
    assert first.status in ("rejected", "promoted"), first.reason
    set_training(gateway, "sl-honest", TEACH)
    ask_and_rate(gateway, key, [*pool, *demo_tasks.examples("routing", 120, seed=32)], lambda i: f"late-{i}", oracle)

    outcome = trainer.run("sl-honest", ALIAS)

    assert outcome.status == "promoted", outcome.reason  # no false alarm
    signals = {signal.name: signal for signal in outcome.report.signals.checks}
    assert [name for name, signal in signals.items() if signal.fired] == []
    assert signals["concentration"].checked and signals["concentration"].evidence["raters"] >= 100
    assert signals["contradictions"].checked and signals["contradictions"].evidence["contradicting"] == 0
    assert signals["drift"].checked and abs(signals["drift"].evidence["shift"]) < 0.3
    assert alias_of(gateway, "sl-honest")["production"] == outcome.candidate


def test_raters_who_reward_wrong_answers_are_held_without_a_golden_set(gateway, trainer, adapter_dirs):
    key = tenant(gateway, "sl-poison", {"training": {**BARELY, "start_from": "scratch"}, "evaluation": EVALUATION})
    good = gateway.register("sl-poison", ALIAS, adapter_dirs["routing"]).json()
    assert gateway.promote("sl-poison", ALIAS, good["version"]).status_code == 200
    pool = [e for e in demo_tasks.examples("routing", 60, seed=41) if e.answer != "billing"][:20]
    honest = ask_and_rate(gateway, key, pool * 3, lambda i: f"honest-{i}", oracle)
    assert sum(is_right(e, answer) for e, (_, answer) in zip(pool * 3, honest, strict=True)) >= 50
    first = trainer.run("sl-poison", ALIAS)  # trains next to nothing: what users agreed on is now history
    assert first.status == "rejected", first.reason
    set_training(gateway, "sl-poison", {**TEACH, "start_from": "scratch"})
    hostile = gateway.tenant("sl-poison")  # the hostile raters' own key
    fresh = demo_tasks.examples("routing", 160, seed=42)
    ask_and_rate(gateway, hostile, [*pool, *pool, *fresh], lambda i: ("mallory", "trudy", "eve")[i % 3], billing)

    outcome = trainer.run("sl-poison", ALIAS)

    assert outcome.status == "held", outcome.reason  # never promoted
    assert alias_of(gateway, "sl-poison")["production"] == good["id"]  # unchanged
    candidate = gateway.admin("GET", f"/tenants/sl-poison/adapters/{ALIAS}/versions/3").json()
    assert candidate["state"] == "staged"
    run = gateway.admin("GET", f"/tenants/sl-poison/training-runs/{outcome.run_id}").json()
    assert run["status"] == "held"
    assert {"contradictions", "concentration", "drift"} <= set(fired(run["report"]))
    assert "signal contradictions" in run["reason"] and "signal concentration" in run["reason"]
    assert "## Signals" in run["report_markdown"] and "| contradictions | **yes** |" in run["report_markdown"]

    result = CliRunner().invoke(
        app,
        ["train", "reject", outcome.run_id, "--tenant", "sl-poison", "--reason", "the raters reward wrong labels"],
        env={"LORAFLOW_GATEWAY_URL": gateway.url, "LORAFLOW_ADMIN_KEY": ADMIN_KEY},
    )
    assert result.exit_code == 0, result.output
    assert f"{outcome.run_id}: rejected" in result.output
    assert gateway.admin("GET", f"/tenants/sl-poison/adapters/{ALIAS}/versions/3").json()["state"] == "retired"
    assert alias_of(gateway, "sl-poison")["production"] == good["id"]
    assert gateway.admin("GET", f"/tenants/sl-poison/training-runs/{outcome.run_id}").json()["status"] == "rejected"
    gateway.admin("POST", f"/tenants/sl-poison/adapters/{ALIAS}/versions/{good['version']}/retire")


def test_a_canary_at_half_the_traffic_proves_a_real_candidate_and_flips_the_alias(gateway, trainer, monkeypatch):
    monkeypatch.setattr(gateway.settings.canary, "interval_s", 0.2)  # the loop reads it each round
    settings = {"training": TEACH, "evaluation": EVALUATION, "canary": {"enabled": True, "share": 0.5}}
    key = tenant(gateway, "sl-canary", settings)
    ask_and_rate(gateway, key, demo_tasks.examples("routing", 200, seed=51), lambda i: f"teach-{i}", oracle)

    outcome = trainer.run("sl-canary", ALIAS)

    assert outcome.status == "canary", outcome.reason
    assert alias_of(gateway, "sl-canary")["production"] is None  # the base model, until the users decide
    canary = gateway.admin("GET", f"/tenants/sl-canary/adapters/{ALIAS}/canary").json()
    assert (canary["status"], canary["candidate"], canary["control"], canary["share"]) == (
        "running", outcome.candidate, None, 0.5,
    )  # fmt: skip
    assert canary["run_id"] == outcome.run_id

    served = ask_and_rate(gateway, key, demo_tasks.examples("routing", 80, seed=52), lambda i: f"user-{i}", oracle)
    decided = wait_for(
        lambda: gateway.admin("GET", f"/tenants/sl-canary/adapters/{ALIAS}/canary").json(),
        lambda found: found["status"] not in ("running", "deciding"),
        timeout_s=60,
    )

    models = [model for model, _ in served]
    # Both arms served until the decision (a few ratings each: right against wrong decides fast), then the candidate.
    assert models.count(BASE_NAME) >= 2 and models.count(outcome.candidate) >= 2
    assert models[-1] == outcome.candidate
    assert decided["status"] == "promoted", decided
    evidence = decided["evidence"]
    assert evidence["candidate"]["rate"] > evidence["control"]["rate"]
    assert evidence["log_e_better"] >= evidence["threshold"]
    assert alias_of(gateway, "sl-canary")["production"] == outcome.candidate  # the alias flipped
    after = gateway.client(key).chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "hello"}], max_tokens=2, user="user-1"
    )
    assert after.model == outcome.candidate
    run = gateway.admin("GET", f"/tenants/sl-canary/training-runs/{outcome.run_id}").json()
    assert run["status"] == "promoted" and run["reason"].startswith(f"promoted by canary {decided['id']}")
    metrics = httpx_get(f"{gateway.url}/metrics")
    assert 'loraflow_canary_ratings{alias="router",arm="candidate",tenant="sl-canary"}' in metrics
    assert 'loraflow_canary_decisions{alias="router",outcome="promoted",tenant="sl-canary"} 1.0' in metrics


def wait_for(fetch: Callable[[], dict], done: Callable[[dict], bool], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while not done(found := fetch()):
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


def httpx_get(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=30).text
