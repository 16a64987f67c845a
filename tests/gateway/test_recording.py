"""Every completion becomes one interaction row whose id is the completion id the client got (fake engine)."""

from __future__ import annotations

import openai
from sqlalchemy import select

from feedback.models import interactions
from tests.gateway.conftest import BASE

MESSAGES = [{"role": "user", "content": "hello"}]


def rows(env) -> dict[str, dict]:
    gw = env.client.app.state.gateway
    assert gw.recorder.writer.flush(timeout=10)  # rows are written off the request path, by the writer's thread
    with gw.db.connect() as connection:
        return {r.id: r._asdict() for r in connection.execute(select(interactions))}


def test_streamed_and_plain_completions_are_recorded_under_the_id_the_client_got(env):
    key = env.tenant_with_key("acme")
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)
    plain = client.chat.completions.with_raw_response.create(model=BASE, messages=MESSAGES, user="u1", temperature=0.5)
    assert plain.headers["x-loraflow-feedback-token"].startswith("lf_fb_")
    plain = plain.parse()
    chunks = list(
        client.completions.create(model=BASE, prompt="hi", stream=True, extra_body={"metadata": {"ticket": "42"}})
    )
    recorded = rows(env)
    assert set(recorded) == {plain.id, chunks[0].id}
    first = recorded[plain.id]
    assert (first["tenant_id"], first["endpoint"], first["end_user"], first["outcome"]) == (
        "acme",
        "chat",
        "u1",
        "completed",
    )
    assert first["request"] == {"messages": MESSAGES} and first["params"]["temperature"] == 0.5
    assert first["response_text"] == "answer from tiny-random" and first["usage"]["total_tokens"] == 8
    second = recorded[chunks[0].id]
    assert second["stream"] and second["response_text"].strip() == "answer from tiny-random"
    assert second["usage"]["completion_tokens"] == 3 and second["metadata"] == {"ticket": "42"}
    assert second["ttft_ms"] is not None and second["latency_ms"] >= second["ttft_ms"]


def test_the_alias_that_served_is_recorded_whatever_the_request_called_it(env):
    env.tenant_with_key("acme")
    assert env.admin("POST", "/tenants/acme/adapters", json={"alias": "support"}).status_code == 201
    key = env.tenant_with_key("acme", model_map={"gpt-4o-mini": "support"})
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)
    mapped = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # served by the base model
    by_name = client.chat.completions.create(model=BASE, messages=MESSAGES)
    recorded = rows(env)
    assert (recorded[mapped.id]["model_requested"], recorded[mapped.id]["alias"]) == ("gpt-4o-mini", "support")
    assert recorded[mapped.id]["adapter_version"] is None
    assert recorded[by_name.id]["alias"] is None
