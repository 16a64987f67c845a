"""`POST /v1/feedback` and `GET /v1/feedback` on the fake engine: every rule of rating a completion."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import openai
import pytest

from feedback.bulk import inserter_for
from feedback.interaction import Interaction
from feedback.tokens import FeedbackTokens
from tests.gateway.record_support import (
    bearer,
    complete,
    count,
    feedback_rows,
    gateway,
    open_env,
    rate,
    sdk,
    with_adapter,
)


@pytest.fixture
def env(tmp_path):
    with open_env(tmp_path) as e:
        yield e


@pytest.fixture
def acme(env, tmp_path):
    return with_adapter(env, tmp_path, "acme")


@pytest.fixture
def globex(env):
    return env.tenant_with_key("globex")


def test_rating_a_completion_returns_201_with_the_stored_record(env, acme):
    completion_id, _ = complete(env, acme, model="support")
    response = rate(env, acme, completion_id=completion_id, rating="up", comment="spot on", user="u1")
    assert response.status_code == 201
    body = response.json()
    assert body["object"] == "feedback" and body["id"].startswith("fb_")
    assert (body["completion_id"], body["rating"], body["comment"]) == (completion_id, "up", "spot on")
    assert body["user"] == "u1"
    assert body["adapter_version"] == "support@1" and body["correction"] is None
    assert len(feedback_rows(env)) == 1


FORMS = [("down", "down"), (1, "up"), (-1, "down"), (True, "up"), ("false", "down")]


@pytest.mark.parametrize(("given", "stored"), FORMS)
def test_every_accepted_rating_form(env, acme, given, stored):
    completion_id, _ = complete(env, acme)
    assert rate(env, acme, completion_id=completion_id, rating=given).json()["rating"] == stored


def test_a_rating_right_after_the_completion_waits_for_the_writers_batch(tmp_path):
    # The writer lingers 0.5 s for a fuller batch: the row is not in the database when the rating arrives.
    with open_env(tmp_path, record={"flush_interval_s": 0.5, "lookup_wait_s": 5}) as env:
        key = env.tenant_with_key("acme")
        completion_id, _ = complete(env, key)
        assert gateway(env).recorder.writer.pending_tenant(completion_id) == "acme"
        assert rate(env, key, completion_id=completion_id, rating="up").status_code == 201


def test_a_completion_another_replica_is_still_writing_is_waited_for(env, acme):
    served = Interaction(
        id=f"chatcmpl-{uuid.uuid4().hex}", tenant_id="acme", key_id="k", model_requested="support",
        adapter_version="support@1", endpoint="chat", request={"messages": []}, created_at=datetime.now(UTC),
    )  # fmt: skip
    db = gateway(env).db
    threading.Timer(0.15, lambda: inserter_for(db).insert(db, [served], 5.0)).start()
    assert rate(env, acme, completion_id=served.id, rating="down").status_code == 201


def test_rerating_by_the_same_user_replaces_the_rating(env, acme):
    completion_id, _ = complete(env, acme)
    first = rate(env, acme, completion_id=completion_id, rating="down", comment="wrong", user="u1").json()
    second = rate(env, acme, completion_id=completion_id, rating="up", user="u1").json()
    other_user = rate(env, acme, completion_id=completion_id, rating="down", user="u2").json()
    assert second["id"] == first["id"] and second["rating"] == "up" and second["comment"] is None
    assert other_user["id"] != first["id"]
    assert sorted((row["end_user"], row["rating"]) for row in feedback_rows(env)) == [("u1", 1), ("u2", -1)]


def test_a_repeated_idempotency_id_returns_the_same_record_and_stores_nothing_twice(env, acme):
    completion_id, _ = complete(env, acme)
    body = {"completion_id": completion_id, "rating": "up", "comment": "thanks", "id": "req-1"}
    first, again = rate(env, acme, **body), rate(env, acme, **body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len(feedback_rows(env)) == 1
    conflict = rate(env, acme, **{**body, "rating": "down"})  # the same id with another body is a client bug
    assert conflict.status_code == 409 and conflict.json()["error"]["param"] == "id"
    assert feedback_rows(env)[0]["rating"] == 1


def test_another_tenants_completion_is_not_found(env, acme, globex):
    completion_id, _ = complete(env, acme)
    response = rate(env, globex, completion_id=completion_id, rating="up")
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "completion_id"
    assert feedback_rows(env) == []


def test_an_unknown_completion_is_not_found_in_the_sdks_terms(env, acme):
    with pytest.raises(openai.NotFoundError):
        sdk(env, acme).post("/feedback", body={"completion_id": "chatcmpl-nope", "rating": "up"}, cast_to=object)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rating": "meh"}, "rating"),
        ({"rating": 2}, "rating"),
        ({"rating": None}, "rating"),
        ({}, "rating"),
        ({"rating": "up", "comment": "x" * 4001}, "comment"),
        ({"rating": "up", "correction": "x" * 32_001}, "correction"),
        ({"rating": "up", "user": "u" * 257}, "user"),
        ({"rating": "up", "comment": 5}, "comment"),
        ({"rating": "up", "comment": "nul \x00 inside"}, "comment"),
    ],
)
def test_bad_feedback_is_400_in_openais_shape_and_stores_nothing(env, acme, body, param):
    completion_id, _ = complete(env, acme)
    response = rate(env, acme, completion_id=completion_id, **body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert feedback_rows(env) == []


def test_bad_feedback_is_refused_at_once_even_for_an_unknown_completion(tmp_path):
    with open_env(tmp_path, record={"lookup_wait_s": 30}) as env:
        key = env.tenant_with_key("acme")
        started = time.monotonic()
        assert rate(env, key, completion_id="chatcmpl-nope", rating="meh").status_code == 400
        assert time.monotonic() - started < 5  # not after waiting for the completion to appear


def test_a_missing_completion_id_needs_a_token(env, acme):
    response = rate(env, acme, rating="up")
    assert response.status_code == 400 and response.json()["error"]["param"] == "completion_id"


def test_unknown_fields_are_accepted_and_ignored(env, acme):
    completion_id, _ = complete(env, acme)
    response = rate(env, acme, completion_id=completion_id, rating="up", widget_version="2.1", metadata={"a": 1})
    assert response.status_code == 201
    assert "widget_version" not in response.json()


def test_a_body_that_is_not_json_or_too_large_is_refused(env, acme):
    headers = {**bearer(acme), "content-type": "application/json"}
    assert env.client.post("/v1/feedback", content=b'{"rating": ', headers=headers).status_code == 400
    huge = b'{"rating": "up", "comment": "' + b"x" * 2_000_000 + b'"}'
    assert env.client.post("/v1/feedback", content=huge, headers=headers).status_code == 413


def test_no_key_or_a_wrong_key_is_401(env, acme):
    completion_id, _ = complete(env, acme)
    assert env.client.post("/v1/feedback", json={"completion_id": completion_id, "rating": "up"}).status_code == 401
    assert rate(env, "lf_sk_wrong", completion_id=completion_id, rating="up").status_code == 401


# Feedback tokens: the browser widget's way to rate one completion without the API key.


def test_a_token_rates_its_own_completion_with_or_without_naming_it(env, acme):
    completion_id, token = complete(env, acme, model="support")
    named = rate(env, token, completion_id=completion_id, rating="up", user="visitor")
    assert named.status_code == 201 and named.json()["adapter_version"] == "support@1"
    implied = rate(env, token, rating="down", correction="Say it differently.")  # completion_id from the token
    assert implied.status_code == 201 and implied.json()["completion_id"] == completion_id


def test_a_streamed_completion_carries_a_token_too(env, acme):
    with sdk(env, acme).chat.completions.with_streaming_response.create(
        model="support", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        token = response.headers["x-loraflow-feedback-token"]
        completion_id = next(iter(response.parse())).id
    assert rate(env, token, rating="up").json()["completion_id"] == completion_id


def test_a_token_is_refused_for_any_other_completion(env, acme, globex):
    _, token = complete(env, acme)
    mine_too, _ = complete(env, acme)
    theirs, _ = complete(env, globex)
    for other in (mine_too, theirs, "chatcmpl-nope"):
        response = rate(env, token, completion_id=other, rating="up")
        assert response.status_code == 401, other
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert feedback_rows(env) == []


def test_an_altered_token_is_401(env, acme):
    completion_id, token = complete(env, acme)
    signature_changed = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other_secret = FeedbackTokens("not-the-gateways-secret", ttl_s=3600).issue("acme", completion_id)
    for bad in (signature_changed, other_secret, "lf_fb_garbage"):
        assert rate(env, bad, completion_id=completion_id, rating="up").status_code == 401
    assert feedback_rows(env) == []


def test_an_expired_token_is_401(env, acme, monkeypatch):
    completion_id, _ = complete(env, acme)
    two_days_ago = time.time() - 2 * 86400
    with monkeypatch.context() as patched:
        patched.setattr("itsdangerous.timed.time.time", lambda: two_days_ago)
        old = FeedbackTokens("test-secret", ttl_s=86400).issue("acme", completion_id)  # the gateway's own secret
    response = rate(env, old, completion_id=completion_id, rating="up")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_a_token_cannot_list_feedback(env, acme):
    _, token = complete(env, acme)
    assert env.client.get("/v1/feedback", headers=bearer(token)).status_code == 401


# Reading ratings back.


def test_get_feedback_of_a_completion_shows_only_the_callers_own(env, acme, globex):
    completion_id, _ = complete(env, acme)
    rate(env, acme, completion_id=completion_id, rating="up", user="u1")
    rate(env, acme, completion_id=completion_id, rating="down", user="u2")
    mine = env.client.get("/v1/feedback", params={"completion_id": completion_id}, headers=bearer(acme)).json()
    assert mine["object"] == "list" and {item["user"] for item in mine["data"]} == {"u1", "u2"}
    assert mine["has_more"] is False
    theirs = env.client.get("/v1/feedback", params={"completion_id": completion_id}, headers=bearer(globex)).json()
    assert theirs["data"] == []


def test_get_feedback_pages_with_a_cursor(env, acme):
    for _ in range(5):
        completion_id, _ = complete(env, acme)
        rate(env, acme, completion_id=completion_id, rating="up")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = env.client.get("/v1/feedback", params=params, headers=bearer(acme)).json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 5
    bad = env.client.get("/v1/feedback", params={"cursor": "not-a-cursor!"}, headers=bearer(acme))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"
    assert count(env) == 5
