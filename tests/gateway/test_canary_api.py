"""Canaries through the gateway on a fake engine: the sticky split in resolution (never a pinned name or the base
model), decisions from the ratings in the record by the background loop (promote, send back, the budget, a person),
bad requests that change nothing, /metrics per arm, and two replicas on one database that split alike, survive a
restart and decide once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.canary.store import ACTIVE
from gateway.settings import CanaryLoopSettings
from gateway.store.models import Promotion
from tests.gateway.conftest import BASE, Env, fake_adapter
from tests.gateway.record_support import HELLO, gateway, open_env, rate, sdk

QUICK_LOOP = {"canary": CanaryLoopSettings(interval_s=0.05)}


@pytest.fixture
def env(tmp_path: Path):
    with open_env(tmp_path, **QUICK_LOOP) as opened:
        yield opened


def two_versions(env: Env, tmp_path: Path, tenant: str = "acme") -> str:
    """support@1 in production, support@2 registered (staged); the tenant's key."""
    key = env.tenant_with_key(tenant)
    assert env.register(tenant, "support", fake_adapter(tmp_path / f"{tenant}-1")).status_code == 201
    assert env.admin("POST", f"/tenants/{tenant}/adapters/support/promote", json={"version": 1}).status_code == 200
    assert env.register(tenant, "support", fake_adapter(tmp_path / f"{tenant}-2")).status_code == 201
    return key


def start(env: Env, tenant: str = "acme", **body: Any):
    return env.admin("POST", f"/tenants/{tenant}/adapters/support/canary", json={"version": 2, **body})


def served_by(env: Env, key: str, user: str | None, model: str = "support") -> tuple[str, str]:
    """(the version that answered, the completion id) for one request of `user`."""
    reply = sdk(env, key).chat.completions.create(model=model, messages=HELLO, **({"user": user} if user else {}))
    return reply.model, reply.id


def users_rate(env: Env, key: str, users: int, likes: Callable[[str], bool], prefix: str = "u") -> dict[str, str]:
    """Each user sends one request to the alias and rates it by what served it; their arms."""
    arms = {}
    for n in range(users):
        user = f"{prefix}{n}"
        version, completion_id = served_by(env, key, user)
        arms[user] = version
        answer = rate(env, key, completion_id=completion_id, rating="up" if likes(version) else "down", user=user)
        assert answer.status_code == 201, answer.text
    return arms


def wait_for(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not done(found := fetch()):
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def canary_of(env: Env, tenant: str = "acme") -> dict:
    return env.admin("GET", f"/tenants/{tenant}/adapters/support/canary").json()


def test_the_split_is_sticky_by_user_and_never_touches_a_pinned_name_or_the_base_model(env, tmp_path):
    key = two_versions(env, tmp_path)
    started = start(env, share=0.5, max_ratings=10_000)
    assert started.status_code == 201, started.text
    canary = started.json()
    assert (canary["status"], canary["candidate"], canary["control"], canary["share"]) == (
        "running", "support@2", "support@1", 0.5,
    )  # fmt: skip
    arms = {f"u{n}": served_by(env, key, f"u{n}")[0] for n in range(120)}
    assert set(arms.values()) == {"support@1", "support@2"}
    assert 0.3 < sum(v == "support@2" for v in arms.values()) / len(arms) < 0.7
    for user, version in list(arms.items())[:30]:
        assert served_by(env, key, user)[0] == version  # sticky
        assert served_by(env, key, user, model="support@1")[0] == "support@1"  # a pinned name is never split
        assert served_by(env, key, user, model=BASE)[0] == BASE  # nor is the base model
    # No `user`: the key is the unit, so one key's requests all get one arm.
    assert len({served_by(env, key, None)[0] for _ in range(10)}) == 1


def test_a_better_candidate_is_promoted_by_the_loop_with_its_evidence(env, tmp_path):
    key = two_versions(env, tmp_path)
    start(env, share=0.5)
    arms = users_rate(env, key, 60, likes=lambda version: version == "support@2")

    done = wait_for(lambda: canary_of(env), lambda c: c["status"] == "promoted")

    assert env.admin("GET", "/tenants/acme/adapters/support").json()["production"] == "support@2"
    evidence = done["evidence"]  # as the loop saw it when it decided, maybe before the last users rated
    candidate, control = evidence["candidate"], evidence["control"]
    assert candidate["ratings"] == candidate["ups"] > 0 and candidate["rate"] == 1.0
    assert control["ratings"] > 0 and control["ups"] == 0
    assert candidate["ratings"] + control["ratings"] <= len(arms)
    assert evidence["log_e_better"] >= evidence["threshold"] and evidence["decided_by"]
    assert done["outcome"] == "promote" and done["reason"].startswith("candidate better")
    assert done["decided_at"] is not None
    # The split is over: everyone gets the new production.
    assert {served_by(env, key, f"u{n}")[0] for n in range(20)} == {"support@2"}
    promotions = env.admin("GET", "/tenants/acme/adapters/support/promotions").json()
    assert promotions[-1]["to_version"] == "support@2" and promotions[-1]["reason"].startswith("canary can_")
    wait_for(lambda: env.client.get("/metrics").text, lambda text: "loraflow_canary_decisions{" in text)
    metrics = env.client.get("/metrics").text
    ratings = float(candidate["ratings"])
    assert f'loraflow_canary_ratings{{alias="support",arm="candidate",tenant="acme"}} {ratings}' in metrics
    assert 'loraflow_canary_up_ratio{alias="support",arm="production",tenant="acme"} 0.0' in metrics
    assert 'loraflow_canary_decisions{alias="support",outcome="promoted",tenant="acme"} 1.0' in metrics


def test_a_worse_candidate_is_sent_back(env, tmp_path):
    key = two_versions(env, tmp_path)
    start(env, share=0.5)
    users_rate(env, key, 60, likes=lambda version: version == "support@1")

    done = wait_for(lambda: canary_of(env), lambda c: c["status"] == "rolled_back")

    assert done["reason"].startswith("candidate worse")
    adapter = env.admin("GET", "/tenants/acme/adapters/support").json()
    assert adapter["production"] == "support@1"
    assert [v["state"] for v in adapter["versions"]] == ["production", "retired"]
    assert {served_by(env, key, f"u{n}")[0] for n in range(20)} == {"support@1"}


def test_only_a_users_first_rating_counts(env, tmp_path):
    key = two_versions(env, tmp_path)
    start(env, share=0.5)
    for _ in range(5):  # one enthusiastic user rating many answers counts once
        _version, completion_id = served_by(env, key, "fan")
        rate(env, key, completion_id=completion_id, rating="up", user="fan")
    evidence = canary_of(env)["evidence"]
    assert evidence["candidate"]["ratings"] + evidence["control"]["ratings"] == 1
    assert canary_of(env)["status"] == "running"


def test_when_the_budget_runs_out_the_tenants_policy_decides(env, tmp_path):
    key = two_versions(env, tmp_path)
    start(env, share=0.5, max_ratings=6, on_budget="promote")
    users_rate(env, key, 6, likes=lambda version: True)

    done = wait_for(lambda: canary_of(env), lambda c: c["status"] not in ACTIVE)

    assert done["status"] == "promoted" and done["evidence"]["why"] == "ratings_budget"
    assert "the tenant's policy says promote" in done["reason"]


def test_a_person_can_end_a_canary_early(env, tmp_path):
    key = two_versions(env, tmp_path)
    start(env, share=0.5)
    served_by(env, key, "u1")
    decision = {"decision": "rollback", "reason": "support saw bugs"}
    stopped = env.admin("POST", "/tenants/acme/adapters/support/canary/stop", json=decision)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "rolled_back"
    assert "rollback by a person: support saw bugs" in stopped.json()["reason"]
    assert env.admin("GET", "/tenants/acme/adapters/support/versions/2").json()["state"] == "retired"
    again = env.admin("POST", "/tenants/acme/adapters/support/canary/stop", json={"decision": "promote"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "no_canary"


def test_promoting_by_hand_during_a_canary_ends_it(env, tmp_path):
    key = two_versions(env, tmp_path)
    start(env, share=0.5)
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 2})
    done = wait_for(lambda: canary_of(env), lambda c: c["status"] not in ACTIVE)
    assert done["status"] == "promoted" and "promoted by other means" in done["reason"]
    assert {served_by(env, key, f"u{n}")[0] for n in range(10)} == {"support@2"}


@pytest.mark.parametrize(
    ("tenant", "body", "status", "code"),
    [
        ("acme", {"version": 9}, 404, "not_found"),
        ("globex", {"version": 2}, 404, "not_found"),  # another tenant's alias
        ("acme", {"version": 1}, 409, "conflict"),  # production already
        ("acme", {"version": 2, "share": 1.5}, 400, "invalid_request"),
        ("acme", {"version": 2, "share": 0}, 400, "invalid_request"),
        ("acme", {"version": 2, "on_budget": "toss"}, 400, "invalid_request"),
        ("acme", {"version": 2, "run_id": "run_nope"}, 404, "not_found"),
        ("acme", {"version": 2, "colour": "red"}, 400, "invalid_request"),
    ],
)
def test_bad_canary_requests_are_refused_and_change_nothing(env, tmp_path, tenant, body, status, code):
    two_versions(env, tmp_path)
    env.tenant_with_key("globex")
    response = env.admin("POST", f"/tenants/{tenant}/adapters/support/canary", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert env.admin("GET", "/tenants/acme/adapters/support/canaries").json() == []
    assert env.admin("GET", "/tenants/acme/adapters/support/canary").status_code == 404


def test_one_canary_at_a_time_and_never_of_a_retired_version(env, tmp_path):
    two_versions(env, tmp_path)
    assert start(env).status_code == 201
    second = start(env)
    assert second.status_code == 409 and second.json()["error"]["code"] == "canary_running"
    env.admin("POST", "/tenants/acme/adapters/support/canary/stop", json={"decision": "rollback"})
    retired = start(env)
    assert retired.status_code == 409 and "retired" in retired.json()["error"]["message"]
    assert len(env.admin("GET", "/tenants/acme/adapters/support/canaries").json()) == 1


def test_a_canary_started_by_a_training_run_ends_it(env, tmp_path):
    key = two_versions(env, tmp_path)
    run = env.admin("POST", "/tenants/acme/training-runs", json={"adapter": "support"}).json()
    ending = {"status": "canary", "candidate": "support@2"}
    finished = env.admin("PATCH", f"/tenants/acme/training-runs/{run['id']}", json=ending)
    assert finished.status_code == 200, finished.text
    assert start(env, share=0.5, run_id=run["id"]).status_code == 201
    users_rate(env, key, 60, likes=lambda version: version == "support@2")
    wait_for(lambda: canary_of(env), lambda c: c["status"] == "promoted")
    ended = env.admin("GET", f"/tenants/acme/training-runs/{run['id']}").json()
    assert ended["status"] == "promoted" and ended["reason"].startswith("promoted by canary can_")


def test_two_replicas_split_alike_survive_a_restart_and_decide_once(tmp_path):
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(open_env(tmp_path / "a", database_url=shared, **QUICK_LOOP))
        key = two_versions(a, tmp_path)
        assert start(a, share=0.5).status_code == 201
        arms = {f"u{n}": served_by(a, key, f"u{n}")[0] for n in range(40)}

        # A replica that starts now (or restarts) reads the canary from the database and splits the same way.
        with open_env(tmp_path / "b", database_url=shared, **QUICK_LOOP) as b:
            b.wait_ready()
            assert {user: served_by(b, key, user)[0] for user in arms} == arms
        b = stack.enter_context(open_env(tmp_path / "b2", database_url=shared, **QUICK_LOOP))
        b.wait_ready()
        assert {user: served_by(b, key, user)[0] for user in arms} == arms

        # Both decision loops run; users rate through either replica; one of them decides, once.
        for n in range(60):
            replica = (a, b)[n % 2]
            version, completion_id = served_by(replica, key, f"v{n}")
            rate(replica, key, completion_id=completion_id, rating="up" if version == "support@2" else "down",
                 user=f"v{n}")  # fmt: skip
        done = wait_for(lambda: canary_of(a), lambda c: c["status"] == "promoted")
        wait_for(lambda: served_by(b, key, "late")[0], lambda version: version == "support@2")
        with gateway(a).sessions() as session:
            assert session.scalar(select(func.count()).select_from(Promotion)) == 2  # support@1, then the canary's
        assert done["evidence"]["decided_by"] in (gateway(a).canaries.replica, gateway(b).canaries.replica)
