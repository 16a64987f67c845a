"""The default base model, SmolLM2-135M-Instruct, end to end: `loraflow up` with no LORAFLOW_BASE_MODEL serves it,
driven with the official `openai` client. A factual question answered right; an adapter trained on it changes its
answers as trained; a grounded answer uses its document; ratings retrain it and the promoted adapter is better.

One `loraflow up` serves the whole group (the `default_model_gateway` fixture); the rest of the suite runs on the tiny
model, where speed matters.
"""

from __future__ import annotations

import contextlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.e2e.adapters import smollm2_routing_adapter
from tests.e2e.stack import ADMIN_KEY, CACHE
from trainer import demo_handbook, demo_tasks, demo_users
from trainer.cycle import Cycle
from trainer.gateway_client import GatewayClient
from trainer.settings import TrainerSettings

pytestmark = [pytest.mark.e2e, pytest.mark.real_model]
BASE = "smollm2-135m-instruct"


def test_up_serves_the_default_model_and_it_answers_a_factual_question(default_model_gateway):
    gateway = default_model_gateway
    assert f"Base model  {BASE}" in gateway.log()
    client = gateway.client(gateway.demo_key)  # the key `up` printed, as a new user pastes it
    assert client.models.list().data[0].id == BASE
    reply = client.chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0,
        max_tokens=20,
    )  # fmt: skip
    assert reply.model == BASE
    assert "Paris" in reply.choices[0].message.content

    # The snippet `up` printed, pasted and run as it is (no max_tokens: the answer must end by itself).
    log = gateway.log()
    start = log.index("from openai import OpenAI")
    end = log.index("print(reply.choices[0].message.content)", start) + len("print(reply.choices[0].message.content)")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(log[start:end], {})
    assert "Paris" in printed.getvalue()


def test_an_adapter_trained_on_the_real_model_changes_its_answers_as_trained(default_model_gateway):
    gateway = default_model_gateway
    adapter = smollm2_routing_adapter(gateway.model_dir, CACHE / "adapters")  # our SFT recipe, cached
    key = gateway.tenant("real-adapter")
    registered = gateway.admin("POST", "/tenants/real-adapter/adapters/router/versions", json={"path": str(adapter)})
    assert registered.status_code == 201, registered.text
    assert gateway.admin("POST", "/tenants/real-adapter/adapters/router/promote", json={"version": 1}).is_success

    client = gateway.client(key)
    tickets = demo_tasks.examples("routing", 20, seed=2)
    base = demo_users.send(client, tickets, model=BASE, max_tokens=8, concurrency=8)
    tuned = demo_users.send(client, tickets, model="router", max_tokens=8, concurrency=8)

    assert demo_users.accuracy(base) <= 0.1  # the base model talks about the ticket instead of naming a label
    assert {item.served_by for item in tuned} == {"router@1"}
    assert demo_users.accuracy(tuned) >= 0.9, [(t.example.answer, t.answer) for t in tuned if not t.right]


def test_grounded_answers_use_their_documents(default_model_gateway):
    gateway = default_model_gateway
    key = gateway.tenant("real-rag")
    files = [("file", (name, text.encode(), "text/markdown")) for name, text in demo_handbook.DOCUMENTS.items()]
    uploaded = gateway.admin("POST", "/tenants/real-rag/documents", files=files)
    assert uploaded.status_code == 201, uploaded.text
    ids = {document["name"]: document["id"] for document in uploaded.json()["data"]}
    client = gateway.client(key)

    def ask(question: demo_handbook.Question, grounded: bool):
        return client.chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": question.text}], temperature=0, max_tokens=48,
            extra_body={"retrieval": {"top_k": 2}} if grounded else None,
        )  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        grounded = list(pool.map(lambda q: ask(q, True), demo_handbook.QUESTIONS))
        plain = list(pool.map(lambda q: ask(q, False), demo_handbook.QUESTIONS))

    def rate(replies) -> float:
        pairs = zip(demo_handbook.QUESTIONS, replies, strict=True)
        return sum(q.answered_by(r.choices[0].message.content or "") for q, r in pairs) / len(replies)

    # 24 questions only the handbook answers: the model alone gets none, grounded it gets most.
    assert rate(plain) <= 0.1 and rate(grounded) >= 0.6, (rate(plain), rate(grounded))
    wifi = grounded[1]  # "What is the guest wifi network at Harbor Lane called?"
    assert "Kestrel-Guest" in wifi.choices[0].message.content
    assert ids["offices.md"] in {source["document_id"] for source in wifi.model_extra["retrieval"]["sources"]}


def test_ratings_retrain_the_real_model_and_the_promoted_adapter_is_better(default_model_gateway, tmp_path: Path):
    gateway = default_model_gateway
    settings = {"training": {"cpu_threads": 1}, "evaluation": {"max_tokens": 4, "concurrency": 8}}
    key = gateway.tenant("real-flywheel", settings)
    assert gateway.admin("POST", "/tenants/real-flywheel/adapters", json={"alias": "router"}).status_code == 201
    client = gateway.client(key)
    before = demo_users.send(client, demo_tasks.examples("routing", 200, seed=1), model="router", max_tokens=4,
                             concurrency=8)  # fmt: skip
    demo_users.rate(client, before)  # the oracle: 👍 when right, 👎 with the right label as the correction
    assert {item.served_by for item in before} == {BASE}

    trainer = TrainerSettings(
        gateway_url=gateway.url, admin_key=SecretStr(ADMIN_KEY), database_url=gateway.database_url,
        var_dir=tmp_path / "trainer-var", base_model=str(gateway.model_dir),
    )  # fmt: skip
    with GatewayClient(gateway.url, ADMIN_KEY) as admin:
        cycle = Cycle(trainer, admin)
        outcome = cycle.run("real-flywheel", "router", trigger="schedule")
        cycle.close()

    assert outcome.status == "promoted", outcome.reason
    held_out = next(row for row in outcome.report.scores if row.split == "held_out")
    assert held_out.n >= 20 and held_out.incumbent <= 0.1 and held_out.candidate >= 0.9, held_out
    after = demo_users.send(client, demo_tasks.examples("routing", 40, seed=2), model="router", max_tokens=4,
                            concurrency=8)  # fmt: skip
    assert {item.served_by for item in after} == {"router@1"}
    assert demo_users.accuracy(after) >= 0.9
