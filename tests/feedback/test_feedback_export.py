"""Dataset export: chat and KTO JSONL, line by line, with the prompt exactly as it was served."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from feedback.export import count_export, iter_export, iter_jsonl
from feedback.ratings import record_feedback

INJECTED = {"role": "system", "content": "Context:\n[1] Orders ship within two days."}
ASKED = {"role": "user", "content": "When will my order ship?"}


@pytest.fixture
def rated(db, seed, make_interaction):
    """Four rated chat completions, one rated text completion, and noise that must not be exported."""
    chat = {"messages": [INJECTED, ASKED]}  # as sent upstream: retrieval put the system message first
    good = make_interaction(request=chat, response_text="Within two days.")
    bad = make_interaction(request=chat, response_text="Never.")
    corrected = make_interaction(request=chat, response_text="Tomorrow maybe.")
    cut = make_interaction(request=chat, response_text="Within t", outcome="client_disconnected")
    text = make_interaction(endpoint="completion", request={"prompt": "Q: ship time?\nA:"}, response_text=" 2 days")
    unrated = make_interaction(request=chat)
    old = make_interaction(request=chat, created_at=datetime.now(UTC) - timedelta(days=10))
    other_tenant = make_interaction(tenant_id="globex", request=chat)
    other_adapter = make_interaction(request=chat, adapter_version="billing@1")
    seed(good, bad, corrected, cut, text, unrated, old, other_tenant, other_adapter)
    for served, rating, correction in [
        (good, "up", None),
        (bad, "down", None),
        (corrected, "down", "Within two days."),
        (cut, "up", None),
        (text, "up", None),
        (old, "up", None),
        (other_tenant, "up", None),
        (other_adapter, "up", None),
    ]:
        record_feedback(db, tenant_id=served.tenant_id, completion_id=served.id, rating=rating, correction=correction)
    # A second user agreeing on the same answer adds no duplicate example.
    record_feedback(db, tenant_id="acme", completion_id=good.id, rating="up", end_user="someone else")
    return {"good": good, "bad": bad, "corrected": corrected, "cut": cut, "text": text}


def lines(db, **options):
    out = list(iter_jsonl(db, "acme", since=datetime.now(UTC) - timedelta(days=1), adapter="support", **options))
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in out)
    return [json.loads(line) for line in out]


def test_chat_format(db, rated):
    examples = lines(db, format="chat")
    for example in examples:
        assert set(example) in ({"messages"}, {"prompt", "completion"})
        if "messages" in example:
            assert example["messages"][:2] == [INJECTED, ASKED]  # retrieved context kept where it was served
            assert example["messages"][-1]["role"] == "assistant"
            assert all(set(m) >= {"role", "content"} for m in example["messages"])
    answers = [e["messages"][-1]["content"] if "messages" in e else e["completion"] for e in examples]
    # thumbs-up -> its response; thumbs-down -> only with a correction; a cut stream is not an answer.
    assert answers == ["Within two days.", "Within two days.", " 2 days"]
    assert examples[-1] == {"prompt": "Q: ship time?\nA:", "completion": " 2 days"}


def test_kto_format(db, rated):
    examples = lines(db, format="kto")
    for example in examples:
        assert set(example) == {"prompt", "completion", "label"} and isinstance(example["label"], bool)
    chat = [e for e in examples if isinstance(e["prompt"], list)]
    assert all(e["prompt"] == [INJECTED, ASKED] for e in chat)
    labelled = [(e["completion"][0]["content"], e["label"]) for e in chat]
    assert all(e["completion"][0]["role"] == "assistant" and len(e["completion"]) == 1 for e in chat)
    assert labelled == [
        ("Within two days.", True),
        ("Never.", False),
        ("Tomorrow maybe.", False),
        ("Within two days.", True),
    ]
    assert examples[-1] == {"prompt": "Q: ship time?\nA:", "completion": " 2 days", "label": True}


def test_progress_count_and_ids(db, rated):
    since = datetime.now(UTC) - timedelta(days=1)
    total = count_export(db, "acme", since=since, adapter="support")
    assert total == 6  # ratings read: good (twice), bad, corrected, cut, text
    assert count_export(db, "acme") == 8  # plus the old one and the other adapter
    seen: list[int] = []
    examples = list(
        iter_export(db, "acme", since=since, adapter="support", with_ids=True, on_progress=seen.append, batch_size=2)
    )
    assert seen[-1] == total and seen == sorted(seen)
    assert {e["completion_id"] for e in examples} == {rated[k].id for k in ("good", "corrected", "text")}
    assert all(e["adapter_version"] == "support@1" for e in examples)
    with pytest.raises(ValueError):
        list(iter_export(db, "acme", format="csv"))  # type: ignore[arg-type]
