"""Grounded completions on the fake engine with the real embedder: the context goes first, the response names its
sources, aliases ground by default, requests override, bad options are 400, and a tenant only sees its own."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from sqlalchemy import select

from feedback.models import interactions
from retrieval.hits import INSTRUCTIONS
from tests.gateway.conftest import BASE, Env
from tests.gateway.retrieval_support import (
    CORPUS,
    bearer,
    chat,
    open_env,
    sdk,
    sent_messages,
    tenant_with_corpus,
    upload,
)

SOURCES = "x-loraflow-sources"


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One gateway with retrieval on for the module (the embedding model loads once per process anyway)."""
    with open_env(tmp_path_factory.mktemp("rag")) as env:
        yield env


@pytest.fixture(scope="module")
def acme(rag):
    """Tenant g-acme with the corpus: (key, {file name: document id})."""
    return tenant_with_corpus(rag, "g-acme")


@pytest.mark.parametrize(("name", "question", "phrase"), [(n, q, p) for n, _, q, p in CORPUS])
def test_grounded_chat_puts_the_right_chunk_first_and_names_it(rag, acme, name, question, phrase):
    key, ids = acme
    response = chat(rag, key, question, retrieval={"top_k": 1})
    assert response.status_code == 200, response.text
    sent = sent_messages(rag)
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].startswith(INSTRUCTIONS)
    assert "[1] (" + name in sent[0]["content"] and phrase in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": question}
    (source,) = response.json()["retrieval"]["sources"]
    assert source["document_id"] == ids[name] and 0 < source["score"] <= 1
    assert response.headers[SOURCES] == str(source["id"])
    assert response.headers["server-timing"].startswith("retrieval;dur=")  # the retrieval stage, in ms
    assert "retrieval" not in rag.engine.requests[-1]  # the extension never reaches the engine


def test_sdk_extra_body_grounds_and_the_reply_carries_sources(rag, acme):
    key, ids = acme
    reply = sdk(rag, key).chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": CORPUS[2][2]}], extra_body={"retrieval": {"top_k": 3}}
    )
    sources = reply.model_extra["retrieval"]["sources"]
    assert len(sources) == 3 and sources[0]["document_id"] == ids["wifi.txt"]
    assert [s["score"] for s in sources] == sorted((s["score"] for s in sources), reverse=True)
    assert sent_messages(rag)[0]["content"].count("\n\n[") == 3  # markers [1], [2], [3]


def test_a_stream_names_its_sources_in_a_header(rag, acme):
    key, _ = acme
    raw = sdk(rag, key).chat.completions.with_raw_response.create(
        model=BASE, messages=[{"role": "user", "content": CORPUS[0][2]}], stream=True,
        extra_body={"retrieval": {"top_k": 2}},
    )  # fmt: skip
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("answer from")
    header = raw.headers[SOURCES].split(",")
    assert len(header) == 2 and all(part.isdigit() for part in header)
    assert "Parking" in sent_messages(rag)[0]["content"]


def test_the_callers_own_system_message_stays_after_the_context(rag, acme):
    key, _ = acme
    messages = [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": "unrelated first"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": CORPUS[1][2]}]  # fmt: skip
    response = rag.client.post(
        "/v1/chat/completions", headers=bearer(key), json={"model": BASE, "messages": messages, "retrieval": {}}
    )
    assert response.status_code == 200, response.text
    sent = sent_messages(rag)
    assert sent[1:] == messages  # the rest exactly as the client sent it
    assert "27 days" in sent[0]["content"].split("[2]")[0]  # the last user message was the query


def test_content_parts_are_searched_by_their_text(rag, acme):
    key, ids = acme
    content = [{"type": "text", "text": "Quick question."}, {"type": "text", "text": CORPUS[3][2]}]
    response = rag.client.post("/v1/chat/completions", headers=bearer(key), json={
        "model": BASE, "messages": [{"role": "user", "content": content}], "retrieval": {"top_k": 1}})  # fmt: skip
    assert response.json()["retrieval"]["sources"][0]["document_id"] == ids["payroll.md"]


def test_text_completion_gets_the_context_before_its_prompt(rag, acme):
    key, ids = acme
    client = sdk(rag, key)
    reply = client.completions.create(model=BASE, prompt=CORPUS[2][2], extra_body={"retrieval": {"top_k": 1}})
    assert reply.model_extra["retrieval"]["sources"][0]["document_id"] == ids["wifi.txt"]
    prompt = rag.engine.requests[-1]["prompt"]
    assert prompt.startswith(INSTRUCTIONS) and "Orchard-Guest" in prompt and prompt.endswith("\n\n" + CORPUS[2][2])
    one = client.completions.create(model=BASE, prompt=[CORPUS[0][2]], extra_body={"retrieval": {"top_k": 1}})
    assert one.model_extra["retrieval"]["sources"][0]["document_id"] == ids["parking.md"]
    for prompt in ([1, 2, 3], ["one", "two"]):
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model=BASE, prompt=prompt, extra_body={"retrieval": {}})
        assert caught.value.body["param"] == "prompt"


def test_no_hits_above_min_score_leaves_the_request_unchanged(rag, acme):
    key, _ = acme
    response = chat(rag, key, "Tell me about volcanoes on Mars.", retrieval={"top_k": 4, "min_score": 0.95})
    assert response.status_code == 200
    assert response.json()["retrieval"] == {"sources": []}
    assert response.headers[SOURCES] == ""
    assert sent_messages(rag) == [{"role": "user", "content": "Tell me about volcanoes on Mars."}]


def test_an_alias_grounds_by_default_and_a_request_overrides_it(rag, acme):
    key, ids = acme
    options = {"retrieval": {"top_k": 1}}
    created = rag.admin("POST", "/tenants/g-acme/adapters", json={"alias": "kb", "options": options})
    assert created.status_code == 201, created.text
    question = CORPUS[0][2]
    by_default = chat(rag, key, question, model="kb").json()
    assert [s["document_id"] for s in by_default["retrieval"]["sources"]] == [ids["parking.md"]]
    assert sent_messages(rag)[0]["role"] == "system"
    assert len(chat(rag, key, question, model="kb", retrieval={"top_k": 3}).json()["retrieval"]["sources"]) == 3
    # Field by field: the alias's top_k stays when the request only sets min_score.
    assert rag.admin("PATCH", "/tenants/g-acme/adapters/kb", json={"options": {"retrieval": {"top_k": 2}}}).is_success
    assert len(chat(rag, key, question, model="kb", retrieval={"min_score": -1}).json()["retrieval"]["sources"]) == 2
    # `null` turns the alias's default off for this request.
    plain = chat(rag, key, question, model="kb", retrieval=None)
    assert "retrieval" not in plain.json() and SOURCES not in plain.headers
    assert sent_messages(rag) == [{"role": "user", "content": question}]
    # `true` means the defaults (default_top_k = 4).
    assert rag.admin("PATCH", "/tenants/g-acme/adapters/kb", json={"options": {"retrieval": True}}).is_success
    assert len(chat(rag, key, question, model="kb").json()["retrieval"]["sources"]) == 4


def test_bad_alias_options_are_a_clear_400(rag, acme):
    key, _ = acme
    rag.admin("POST", "/tenants/g-acme/adapters", json={"alias": "broken", "options": {"retrieval": {"top_k": 0}}})
    response = chat(rag, key, "hello", model="broken")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "retrieval.top_k"


@pytest.mark.parametrize(
    ("options", "param"),
    [({"top_k": 21}, "retrieval.top_k"), ({"top_k": 0}, "retrieval.top_k"), ({"top_k": 51}, "retrieval.top_k"),
     ({"min_score": 2}, "retrieval.min_score"), ({"top_k": "many"}, "retrieval.top_k"),
     ({"tenant": "g-other"}, "retrieval.tenant")],
)  # fmt: skip
def test_out_of_range_options_are_400_in_openai_shape(rag, acme, options, param):
    key, _ = acme
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(rag, key).chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": "hi"}], extra_body={"retrieval": options}
        )
    error = caught.value.body
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_a_tenant_never_sees_another_tenants_chunks_whatever_it_sends(rag, acme):
    _, acme_ids = acme
    key = rag.tenant_with_key("g-globex")
    assert upload(rag, "g-globex", ("lunch.txt", "The cafeteria serves lunch from noon to 2 pm.")).status_code == 201
    for _, _, question, phrase in CORPUS:
        body = chat(rag, key, question, retrieval={"top_k": 20, "min_score": -1}).json()
        assert [s["document_id"] for s in body["retrieval"]["sources"]] != []
        assert not {s["document_id"] for s in body["retrieval"]["sources"]} & set(acme_ids.values())
        assert phrase not in sent_messages(rag)[0]["content"]
    # Naming the other tenant's alias or adapter gets nothing either.
    assert chat(rag, key, CORPUS[0][2], model="kb", retrieval={}).status_code == 404
    # A tenant with no documents: grounded, with nothing to put in front.
    empty = rag.tenant_with_key("g-empty")
    body = chat(rag, empty, CORPUS[0][2], retrieval={"top_k": 20, "min_score": -1}).json()
    assert body["retrieval"]["sources"] == [] and len(sent_messages(rag)) == 1


def test_the_record_keeps_the_messages_as_sent_and_the_retrieved_chunks(rag, acme):
    key, ids = acme
    reply = chat(rag, key, CORPUS[1][2], retrieval={"top_k": 2}).json()
    gateway = rag.client.app.state.gateway
    assert gateway.recorder.writer.flush(timeout=10)
    with gateway.db.connect() as connection:
        row = connection.execute(select(interactions).where(interactions.c.id == reply["id"])).one()
    assert row.request["messages"] == sent_messages(rag)  # what the engine got, context first
    assert [r["id"] for r in row.retrieved] == [s["id"] for s in reply["retrieval"]["sources"]]
    first = row.retrieved[0]
    assert first["document_id"] == ids["vacation.md"] and "27 days" in first["text"]
    assert set(first) >= {"document_name", "position", "score", "metadata"}
    assert "retrieval" not in row.params


def test_retrieval_latency_is_exported_to_prometheus(rag, acme):
    key, _ = acme
    chat(rag, key, "hello", retrieval={})
    text = rag.client.get("/metrics").text
    count = next(line for line in text.splitlines() if line.startswith("loraflow_retrieval_duration_seconds_count"))
    assert float(count.split()[-1]) >= 1
