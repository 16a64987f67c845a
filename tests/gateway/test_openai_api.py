"""The OpenAI-compatible API on a fake engine, driven with the official `openai` client."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.gateway.conftest import BASE, fake_adapter

MESSAGES = [{"role": "user", "content": "hello"}]


def sdk(env, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)


@pytest.fixture
def acme(env, tmp_path):
    """Tenant acme with a `support` adapter in production (version 1)."""
    key = env.tenant_with_key("acme")
    assert env.register("acme", "support", fake_adapter(tmp_path / "a1")).status_code == 201
    assert env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1}).status_code == 200
    return key


def test_chat_answers_with_the_client_facing_id_and_model(env, acme):
    reply = sdk(env, acme).chat.completions.create(model="support", messages=MESSAGES)
    assert reply.model == "support@1"
    assert reply.id.startswith("chatcmpl-") and "upstream" not in reply.id
    assert reply.choices[0].message.content.startswith("answer from lf-")  # the engine saw the opaque name
    assert reply.usage.total_tokens == 8


def test_chat_stream_rewrites_every_chunk_and_ends_with_done(env, acme):
    chunks = list(sdk(env, acme).chat.completions.create(model="support", messages=MESSAGES, stream=True))
    assert {c.model for c in chunks} == {"support@1"}
    assert len({c.id for c in chunks}) == 1 and "upstream" not in chunks[0].id
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("answer from lf-")


def test_stream_usage_chunk_only_when_asked(env, acme):
    chunks = list(
        sdk(env, acme).chat.completions.create(
            model="support", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 8


def test_raw_stream_ends_with_done(env, acme):
    body = {"model": BASE, "messages": MESSAGES, "stream": True}
    with env.client.stream("POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {acme}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert text.rstrip().endswith("data: [DONE]")


def test_text_completions_streamed_and_not(env, acme):
    client = sdk(env, acme)
    reply = client.completions.create(model="support@1", prompt="hi", max_tokens=5)
    assert reply.id.startswith("cmpl-") and reply.model == "support@1"
    chunks = list(client.completions.create(model=BASE, prompt="hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices).startswith("answer from tiny-random")


def test_sampling_parameters_and_unknown_fields_are_passed_on_but_extensions_are_not(env, acme):
    sdk(env, acme).chat.completions.create(
        model=BASE, messages=MESSAGES, temperature=0.3, top_p=0.9, seed=7, max_tokens=11,
        extra_body={"top_k": 5, "retrieval": None},  # null: an extension, off (retrieval is off here)
    )  # fmt: skip
    sent = env.engine.requests[-1]
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["max_tokens"], sent["top_k"]) == (0.3, 0.9, 7, 11, 5)
    assert "retrieval" not in sent


def test_missing_or_wrong_key_is_an_authentication_error(env, acme):
    with pytest.raises(openai.AuthenticationError):
        sdk(env, "lf_sk_wrong").chat.completions.create(model=BASE, messages=MESSAGES)
    response = env.client.post("/v1/chat/completions", json={"model": BASE, "messages": MESSAGES})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_model_is_model_not_found(env, acme):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(env, acme).chat.completions.create(model="nope", messages=MESSAGES)
    assert caught.value.code == "model_not_found"


def test_another_tenants_adapter_is_not_found_never_forbidden(env, acme, tmp_path):
    other = env.tenant_with_key("globex")
    for model in ("support", "support@1"):
        with pytest.raises(openai.NotFoundError):
            sdk(env, other).chat.completions.create(model=model, messages=MESSAGES)


def test_malformed_json_wrong_types_and_bad_ranges_are_bad_requests(env, acme):
    headers = {"Authorization": f"Bearer {acme}", "Content-Type": "application/json"}
    response = env.client.post("/v1/chat/completions", content=b"{not json", headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    response = env.client.post("/v1/chat/completions", content=b"[1, 2]", headers=headers)
    assert response.status_code == 400
    response = env.client.post("/v1/chat/completions", json={"model": BASE, "messages": "hi"}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(env, acme).chat.completions.create(model=BASE, messages=MESSAGES, temperature=5)
    assert caught.value.body["param"] == "temperature"
    requests_before = len(env.engine.requests)
    with pytest.raises(openai.BadRequestError):
        sdk(env, acme).chat.completions.create(model=BASE, messages=[])
    assert len(env.engine.requests) == requests_before  # refused before reaching the engine


def test_oversized_request_is_refused_before_it_is_read(env, acme):
    big = "x" * (env.settings.max_request_bytes + 1)
    response = env.client.post(
        "/v1/chat/completions",
        json={"model": BASE, "messages": [{"role": "user", "content": big}]},
        headers={"Authorization": f"Bearer {acme}"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_engine_errors_keep_the_openai_shape_and_hide_internal_names(env, acme):
    env.engine.adapters.clear()  # the engine "restarted": the gateway reloads and retries once
    reply = sdk(env, acme).chat.completions.create(model="support", messages=MESSAGES)
    assert reply.model == "support@1"


def test_engine_down_is_503_with_retry_after(env, acme):
    env.engine.healthy = False
    deadline = time.monotonic() + 5
    while env.client.get("/ready").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    response = env.client.post(
        "/v1/chat/completions", json={"model": BASE, "messages": MESSAGES}, headers={"Authorization": f"Bearer {acme}"}
    )
    assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "engine_unavailable"
    with pytest.raises(openai.InternalServerError):
        sdk(env, acme).chat.completions.create(model=BASE, messages=MESSAGES)
    env.engine.healthy = True
    env.wait_ready()
    assert sdk(env, acme).chat.completions.create(model="support", messages=MESSAGES).model == "support@1"


def test_model_map_and_default_adapter(env, acme):
    key = env.tenant_with_key("acme", default_adapter="support", model_map={"gpt-4o-mini": "support"})
    assert sdk(env, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model == "support@1"
    response = env.client.post(
        "/v1/chat/completions", json={"messages": MESSAGES}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200 and response.json()["model"] == "support@1"


def test_models_lists_only_the_callers_adapters_and_no_paths(env, acme, tmp_path):
    other = env.tenant_with_key("globex")
    env.register("globex", "legal", fake_adapter(tmp_path / "g1"))
    ids = [m.id for m in sdk(env, acme).models.list()]
    assert ids == [BASE, "support", "support@1"]
    assert sdk(env, acme).models.retrieve("support@1").owned_by == "acme"
    with pytest.raises(openai.NotFoundError):
        sdk(env, other).models.retrieve("support")
    raw = env.client.get("/v1/models", headers={"Authorization": f"Bearer {acme}"}).text
    assert str(tmp_path) not in raw and "lf-" not in json.loads(raw).__repr__()


def test_health_ready_and_metrics(env, acme):
    assert env.client.get("/health").json() == {"status": "ok"}
    assert env.client.get("/ready").json()["status"] == "ready"
    sdk(env, acme).chat.completions.create(model="support", messages=MESSAGES)
    metrics = env.client.get("/metrics").text
    assert 'loraflow_adapter_version_requests_total{model="support@1",tenant="acme"} 1.0' in metrics
    assert 'loraflow_engine_up{engine="http://engine-a"} 1.0' in metrics
    assert "loraflow_completion_duration_seconds_bucket" in metrics
    assert 'loraflow_tokens_total{kind="completion"} 3.0' in metrics


def test_an_error_after_the_stream_started_is_one_error_event_then_done(env, acme):
    env.engine.cut_streams = True
    body = {"model": "support", "messages": MESSAGES, "stream": True}
    with env.client.stream("POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {acme}"}) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][6:])["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "upstream_error"
    with pytest.raises(openai.APIError):  # the SDK raises on the error event
        list(sdk(env, acme).chat.completions.create(model="support", messages=MESSAGES, stream=True))
