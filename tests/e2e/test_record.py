"""The record on the real engine: every completion one interaction row (concurrent, streamed or not, cancelled by
the client mid-stream), feedback with the ids and tokens the official `openai` client received, and the export."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import openai
import pytest

from tests.e2e.stack import BASE_NAME, HELLO

pytestmark = pytest.mark.e2e
TOKEN_HEADER = "x-loraflow-feedback-token"
CANCELLED_LENGTH = 300  # tokens of the streams the client closes early (1,500 kept the CPU engine deaf to /health)


@pytest.fixture(scope="module")
def keys(gateway, adapter_dirs) -> dict[str, str]:
    """Two tenants of their own (the session's gateway is shared), each with `support` in production."""
    made = {}
    for tenant, adapter in (("rec-acme", "alpha"), ("rec-globex", "globex")):
        made[tenant] = gateway.tenant(tenant)
        response = gateway.register(tenant, "support", adapter_dirs[adapter])
        assert response.status_code == 201, response.text
        assert gateway.promote(tenant, "support", response.json()["version"]).status_code == 200
    return made


def rate(client: openai.OpenAI, **body) -> dict:
    """POST /v1/feedback through the official client (its errors are the SDK's own exceptions)."""
    return client.post("/feedback", body=body, cast_to=object)


@dataclass
class Received:
    id: str
    outcome: str
    text: str
    stream: bool
    adapter_version: str | None


def test_concurrent_completions_streamed_plain_and_cancelled_are_exactly_one_row_each(gateway, keys):
    before = len(gateway.recorded("rec-acme"))
    client = gateway.async_client(keys["rec-acme"])

    async def plain(i: int) -> Received:
        reply = await client.chat.completions.create(
            model="support", messages=HELLO, temperature=0, max_tokens=8, user=f"user-{i}"
        )
        return Received(reply.id, "completed", reply.choices[0].message.content, False, "support@1")

    async def streamed(i: int) -> Received:
        stream = await client.chat.completions.create(
            model="support", messages=HELLO, temperature=0, max_tokens=8, stream=True, user=f"user-{i}"
        )
        ids, text = set(), ""
        async for chunk in stream:
            ids.add(chunk.id)
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        assert len(ids) == 1
        return Received(ids.pop(), "completed", text, True, "support@1")

    async def text_completion(i: int) -> Received:
        reply = await client.completions.create(model=BASE_NAME, prompt="The quick brown fox", max_tokens=6)
        return Received(reply.id, "completed", reply.choices[0].text, False, None)

    async def cancelled(i: int) -> Received:
        # A long generation, closed by the client after its first chunks.
        stream = await client.chat.completions.create(
            model=BASE_NAME, messages=HELLO, max_tokens=CANCELLED_LENGTH, stream=True, extra_body={"ignore_eos": True}
        )
        completion_id, text, chunks = "", "", 0
        async for chunk in stream:
            completion_id = chunk.id
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            chunks += 1
            if chunks == 3:
                break
        await stream.close()
        return Received(completion_id, "client_disconnected", text, True, None)

    kinds = [plain] * 8 + [streamed] * 8 + [text_completion] * 2 + [cancelled] * 6

    async def burst() -> list[Received]:
        return await asyncio.gather(*(kind(i) for i, kind in enumerate(kinds)))

    received = {r.id: r for r in asyncio.run(burst())}
    assert len(received) == len(kinds)  # 24 distinct completion ids

    # A cancelled stream's row is submitted when the gateway notices the client left: give it a moment.
    deadline = time.monotonic() + 30
    while len(rows := gateway.recorded("rec-acme")) < before + len(kinds):
        assert time.monotonic() < deadline, f"{len(rows) - before} of {len(kinds)} interactions recorded"
        time.sleep(0.2)
    assert len(rows) == before + len(kinds)  # exactly one row per completion: none lost, none twice
    for completion_id, expected in received.items():
        row = rows[completion_id]
        if expected.outcome == "client_disconnected" and row["outcome"] == "completed":
            # The CPU engine sometimes holds a generation back and sends it whole (direct clients see it too): then
            # the gateway had relayed it all before the client left, and the row is rightly complete.
            assert row["finish_reason"] == "length" and row["usage"]["completion_tokens"] == CANCELLED_LENGTH
            assert row["response_text"].startswith(expected.text)
            continue
        assert (row["outcome"], row["stream"], row["adapter_version"]) == (
            expected.outcome,
            expected.stream,
            expected.adapter_version,
        ), completion_id
        if expected.outcome == "completed":
            assert row["response_text"] == expected.text and row["finish_reason"] in ("stop", "length")
            assert row["usage"]["completion_tokens"] >= 1
        else:
            # The gateway may have relayed a little more than the client read before it closed.
            assert row["response_text"].startswith(expected.text)
            assert row["finish_reason"] is None and row["usage"] is None
    users = {row["end_user"] for row in rows.values() if row["id"] in received}
    assert {f"user-{i}" for i in range(16)} <= users


def test_feedback_round_trip_with_the_ids_the_client_received(gateway, keys):
    client = gateway.client(keys["rec-acme"])
    reply = client.chat.completions.create(model="support", messages=HELLO, temperature=0, max_tokens=4, user="ann")
    chunks = list(client.chat.completions.create(model="support", messages=HELLO, max_tokens=4, stream=True))
    stream_id = chunks[0].id

    # Rated at once: the rows may still be in the writer's batch.
    up = rate(client, completion_id=reply.id, rating="up", user="ann", comment="right")
    assert (up["object"], up["completion_id"], up["rating"], up["adapter_version"]) == (
        "feedback",
        reply.id,
        "up",
        "support@1",
    )
    replaced = rate(client, completion_id=reply.id, rating=-1, user="ann")
    assert replaced["id"] == up["id"] and replaced["rating"] == "down"
    first = rate(client, completion_id=stream_id, rating=True, correction="ALPHA!", id="click-1")
    assert rate(client, completion_id=stream_id, rating=True, correction="ALPHA!", id="click-1") == first

    listed = client.get("/feedback", options={"params": {"completion_id": reply.id}}, cast_to=object)
    assert [(item["id"], item["rating"], item["user"]) for item in listed["data"]] == [(up["id"], "down", "ann")]
    with pytest.raises(openai.BadRequestError) as caught:
        rate(client, completion_id=reply.id, rating="meh")
    assert caught.value.body["param"] == "rating"


def test_another_tenant_cannot_rate_or_read_a_completion(gateway, keys):
    acme, globex = gateway.client(keys["rec-acme"]), gateway.client(keys["rec-globex"])
    reply = acme.chat.completions.create(model="support", messages=HELLO, max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        rate(globex, completion_id=reply.id, rating="down")
    rate(acme, completion_id=reply.id, rating="up")
    theirs = globex.get("/feedback", options={"params": {"completion_id": reply.id}}, cast_to=object)
    assert theirs["data"] == []


def test_a_feedback_token_rates_its_own_completion_and_no_other(gateway, keys):
    client = gateway.client(keys["rec-acme"])
    raw = client.chat.completions.with_raw_response.create(model="support", messages=HELLO, max_tokens=2)
    token, plain = raw.headers[TOKEN_HEADER], raw.parse()
    with client.chat.completions.with_streaming_response.create(
        model="support", messages=HELLO, max_tokens=2, stream=True
    ) as response:
        stream_token = response.headers[TOKEN_HEADER]
        streamed = {chunk.id for chunk in response.parse()}.pop()
    other_tenants = gateway.client(keys["rec-globex"]).chat.completions.create(
        model="support", messages=HELLO, max_tokens=2
    )

    assert rate(gateway.client(token), completion_id=plain.id, rating="up", user="visitor")["completion_id"] == plain.id
    assert rate(gateway.client(stream_token), rating="down")["completion_id"] == streamed  # the id from the token
    for other in (streamed, other_tenants.id):
        with pytest.raises(openai.AuthenticationError):
            rate(gateway.client(token), completion_id=other, rating="up")
    altered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    with pytest.raises(openai.AuthenticationError):
        rate(gateway.client(altered), completion_id=plain.id, rating="up")


def test_export_chat_and_kto_line_by_line(gateway, keys):
    started = datetime.now(UTC).isoformat()
    client = gateway.client(keys["rec-acme"])
    replies = [
        client.chat.completions.create(model="support", messages=HELLO, temperature=0, max_tokens=4) for _ in range(3)
    ]
    liked, corrected, disliked = (reply.id for reply in replies)
    answer = {reply.id: reply.choices[0].message.content for reply in replies}
    rate(client, completion_id=liked, rating="up")
    rate(client, completion_id=corrected, rating="down", correction="A better answer.")
    rate(client, completion_id=disliked, rating="down")

    def export(format: str) -> list[dict]:
        response = gateway.admin(
            "GET", "/tenants/rec-acme/feedback/export", params={"format": format, "since": started, "with_ids": True}
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-loraflow-export-ratings"] == "3"
        assert response.text.endswith("\n")
        return [json.loads(line) for line in response.text.splitlines()]  # each line valid JSON by itself

    chat = export("chat")
    assert {line["completion_id"]: line["messages"][-1]["content"] for line in chat} == {
        liked: answer[liked],
        corrected: "A better answer.",
    }
    for line in chat:
        assert set(line) == {"messages", "completion_id", "adapter_version"} and line["adapter_version"] == "support@1"
        assert line["messages"][:-1] == HELLO and line["messages"][-1]["role"] == "assistant"

    kto = export("kto")
    for line in kto:
        assert set(line) == {"prompt", "completion", "label", "completion_id", "adapter_version"}
        assert line["prompt"] == HELLO and isinstance(line["label"], bool)
        assert [turn["role"] for turn in line["completion"]] == ["assistant"]
    assert sorted((line["completion_id"], line["completion"][0]["content"], line["label"]) for line in kto) == sorted(
        [
            (liked, answer[liked], True),
            (corrected, answer[corrected], False),
            (corrected, "A better answer.", True),
            (disliked, answer[disliked], False),
        ]
    )

    stats = gateway.admin("GET", "/tenants/rec-acme/stats").json()["data"]
    v1 = next(row for row in stats if row["model"] == "support@1")
    assert v1["ratings"] >= 3 and 0 <= v1["up_rate_low"] <= v1["up_rate"] <= v1["up_rate_high"] <= 1
