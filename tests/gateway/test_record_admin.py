"""The admin API over the record on the fake engine: listing with filters, export, stats, forgetting an end user,
the Prometheus feedback metrics, and CORS for browser widgets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from feedback.stats import wilson_interval
from tests.gateway.conftest import BASE
from tests.gateway.record_support import (
    HELLO,
    bearer,
    complete,
    count,
    gateway,
    open_env,
    rate,
    wait_until,
    with_adapter,
)


@pytest.fixture
def env(tmp_path):
    with open_env(tmp_path, cors_origins=["https://widget.example"]) as e:
        yield e


@pytest.fixture
def rated(env, tmp_path):
    """acme: support@1 (3 completions: up, up, down with a correction), support@2 in production (1 completion,
    rated down by two users), the base model (1 completion, unrated); globex: one rated completion."""
    key = with_adapter(env, tmp_path, "acme", versions=2)
    ids = {}
    for name, model, user in (("a", "support@1", "ann"), ("b", "support@1", "bob"), ("c", "support@1", "ann"),
                              ("d", "support", "bob"), ("base", BASE, "cid")):  # fmt: skip
        ids[name], _ = complete(env, key, model=model, user=user)
    for name, rating, user, extra in (
        ("a", "up", "ann", {}), ("b", "up", "bob", {"comment": "good"}),
        ("c", "down", "ann", {"correction": "The right answer."}), ("d", "down", "bob", {}), ("d", "down", "eve", {}),
    ):  # fmt: skip
        assert rate(env, key, completion_id=ids[name], rating=rating, user=user, **extra).status_code == 201
    other = env.tenant_with_key("globex")
    theirs, _ = complete(env, other)
    rate(env, other, completion_id=theirs, rating="up", user="ann")
    return ids


def listing(env, tenant: str = "acme", **params) -> dict:
    response = env.admin("GET", f"/tenants/{tenant}/feedback", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_admin_listing_filters(env, rated):
    assert len(listing(env)["data"]) == 5
    first_version = {item["completion_id"] for item in listing(env, adapter="support@1")["data"]}
    assert first_version == {rated["a"], rated["b"], rated["c"]}
    assert len(listing(env, adapter="support")["data"]) == 5  # an alias: all its versions
    assert {item["user"] for item in listing(env, rating="down")["data"]} == {"ann", "bob", "eve"}
    assert {item["completion_id"] for item in listing(env, user="ann")["data"]} == {rated["a"], rated["c"]}
    assert len(listing(env, completion_id=rated["d"])["data"]) == 2
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert listing(env, since=future)["data"] == [] and len(listing(env, since=past)["data"]) == 5
    assert listing(env, until=past)["data"] == [] and len(listing(env, until=future)["data"]) == 5
    assert len(listing(env, tenant="globex")["data"]) == 1


def test_admin_listing_pages_with_a_cursor(env, rated):
    seen, params = [], {"limit": 2}
    while True:
        page = listing(env, **params)
        seen += [item["id"] for item in page["data"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/tenants/nobody/feedback", {}, 404),
        ("/tenants/acme/feedback", {"rating": "meh"}, 400),
        ("/tenants/acme/feedback", {"limit": 0}, 400),
        ("/tenants/acme/feedback", {"since": "yesterday"}, 400),
        ("/tenants/nobody/feedback/export", {}, 404),
        ("/tenants/acme/feedback/export", {"format": "csv"}, 400),
        ("/tenants/nobody/stats", {}, 404),
    ],
)
def test_admin_record_errors(env, rated, path, params, status):
    response = env.admin("GET", path, params=params)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_the_record_admin_api_needs_the_admin_key(env, rated):
    key = env.tenant_with_key("acme")
    for path in ("/admin/tenants/acme/feedback", "/admin/tenants/acme/stats", "/admin/tenants/acme/feedback/export"):
        assert env.client.get(path, headers=bearer(key)).status_code == 401
    assert env.client.delete("/admin/tenants/acme/users/ann", headers=bearer(key)).status_code == 401


def export(env, **params) -> tuple[int, list[dict]]:
    response = env.admin("GET", "/tenants/acme/feedback/export", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.text == "" or response.text.endswith("\n")
    lines = [json.loads(line) for line in response.text.splitlines()]  # every line is JSON on its own
    return int(response.headers["x-loraflow-export-ratings"]), lines


def test_chat_export_lines(env, rated):
    total, lines = export(env, format="chat")
    assert total == 5
    # a and b: the response rated up; c: the correction; d: thumbs-down without a correction, left out.
    assert len(lines) == 3
    for line in lines:
        assert set(line) == {"messages"}
        assert line["messages"][:-1] == HELLO
        assert line["messages"][-1]["role"] == "assistant"
    answers = [line["messages"][-1]["content"] for line in lines]
    assert answers.count("The right answer.") == 1
    assert all(answer == "The right answer." or answer.startswith("answer from lf-") for answer in answers)


def test_kto_export_lines(env, rated):
    total, lines = export(env, format="kto", with_ids="true")
    assert total == 5
    for line in lines:
        assert set(line) == {"prompt", "completion", "label", "completion_id", "adapter_version"}
        assert line["prompt"] == HELLO and isinstance(line["label"], bool)
        assert [turn["role"] for turn in line["completion"]] == ["assistant"]
    labels = sorted((line["completion_id"], line["label"]) for line in lines)
    # c yields its response (false) and its correction (true); d's two identical thumbs-down are one example.
    expected = [(rated["a"], True), (rated["b"], True), (rated["c"], False), (rated["c"], True), (rated["d"], False)]
    assert labels == sorted(expected)


def test_export_filters(env, rated):
    total, lines = export(env, format="kto", adapter="support@2")
    assert total == 2 and len(lines) == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert export(env, since=future) == (0, [])


def test_stats_per_adapter_version(env, rated):
    response = env.admin("GET", "/tenants/acme/stats")
    assert response.status_code == 200
    body = response.json()
    by_model = {row["model"]: row for row in body["data"]}
    assert set(by_model) == {"support@1", "support@2", BASE}
    v1 = by_model["support@1"]
    assert (v1["interactions"], v1["ratings"], v1["up"], v1["down"]) == (3, 3, 2, 1)
    assert v1["up_rate"] == pytest.approx(2 / 3)
    assert (v1["up_rate_low"], v1["up_rate_high"]) == pytest.approx(wilson_interval(2, 3))
    assert by_model["support@2"]["up_rate"] == 0.0
    base = by_model[BASE]
    assert base["adapter_version"] is None and base["interactions"] == 1 and base["up_rate"] is None


def test_the_metrics_show_the_thumbs_up_rate_per_version(env, rated):
    def metric_lines() -> list[str]:
        return [line for line in env.client.get("/metrics").text.splitlines() if line.startswith("loraflow_feedback")]

    expected = {
        'loraflow_feedback_up_ratio{model="support@1",tenant="acme"} 0.6666666666666666',
        'loraflow_feedback_ratings{model="support@1",rating="up",tenant="acme"} 2.0',
        'loraflow_feedback_ratings{model="support@2",rating="down",tenant="acme"} 2.0',
        'loraflow_feedback_ratings{model="tiny-random",rating="up",tenant="globex"} 1.0',
    }
    lines = wait_until(lambda: (found := metric_lines()) and expected <= set(found) and found, timeout_s=5)
    assert any(line.startswith('loraflow_feedback_up_ratio_low{model="support@1",tenant="acme"}') for line in lines)
    unrated = f'model="{BASE}",tenant="acme"'
    assert not any(unrated in line for line in lines if "up_ratio" in line)  # no ratings, no rate


def test_forget_a_user_deletes_their_interactions_and_ratings_only(env, rated):
    key = env.tenant_with_key("acme")
    before = count(env)
    response = env.admin("DELETE", "/tenants/acme/users/ann")
    assert response.status_code == 200
    # ann's interactions a and c, with their ratings (both hers); globex's ann is another person.
    assert response.json() == {"tenant_id": "acme", "user": "ann", "interactions": 2, "feedback": 2}
    assert count(env) == before - 2
    assert {item["user"] for item in listing(env)["data"]} == {"bob", "eve"}
    assert len(listing(env, tenant="globex")["data"]) == 1
    assert rate(env, key, completion_id=rated["a"], rating="up").status_code == 404
    again = env.admin("DELETE", "/tenants/acme/users/ann").json()
    assert (again["interactions"], again["feedback"]) == (0, 0)
    assert env.admin("DELETE", "/tenants/nobody/users/ann").status_code == 404


def test_forget_writes_the_users_queued_interactions_first(tmp_path):
    # The writer lingers: the completion below is still in its queue when the forget arrives.
    with open_env(tmp_path, record={"flush_interval_s": 1.0}) as env:
        key = env.tenant_with_key("acme")
        completion_id, _ = complete(env, key, user="jane@example.com")
        assert gateway(env).recorder.writer.pending_tenant(completion_id) == "acme"
        response = env.admin("DELETE", "/tenants/acme/users/jane@example.com")
        assert response.json()["interactions"] == 1
        assert count(env) == 0


def test_cors_lets_the_configured_origin_post_with_a_token_and_read_the_token_header(env, rated):
    preflight = env.client.options(
        "/v1/feedback",
        headers={"Origin": "https://widget.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )  # fmt: skip
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://widget.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    key = env.tenant_with_key("acme")
    response = env.client.post(
        "/v1/chat/completions", json={"model": BASE, "messages": HELLO},
        headers={**bearer(key), "Origin": "https://widget.example"},
    )  # fmt: skip
    assert response.headers["access-control-allow-origin"] == "https://widget.example"
    assert "x-loraflow-feedback-token" in response.headers["access-control-expose-headers"]
    token = response.headers["x-loraflow-feedback-token"]
    rated_with_token = env.client.post(
        "/v1/feedback", json={"rating": "up"}, headers={**bearer(token), "Origin": "https://widget.example"}
    )
    assert rated_with_token.status_code == 201
    assert rated_with_token.headers["access-control-allow-origin"] == "https://widget.example"
    elsewhere = env.client.post("/v1/feedback", json={"rating": "up"}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in elsewhere.headers


def test_no_cors_headers_unless_configured(tmp_path):
    with open_env(tmp_path) as env:
        preflight = env.client.options(
            "/v1/feedback", headers={"Origin": "https://widget.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers
