"""Retrieval on the real engine through a real gateway (uvicorn, retrieval on) with the official `openai` client:
grounded requests carry the right chunk and name it, the record keeps the context, tenants with conflicting
documents each get their own, the index survives a restart without re-embedding, rebuilds under load fail no
query, and /v1/embeddings ranks paraphrases above unrelated pairs."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from gateway.settings import EngineSettings, Settings
from retrieval.settings import RetrievalSettings
from retrieval.uploads import ParsedDocument, Piece
from tests.e2e.conftest import Gateway, serve
from tests.e2e.stack import ADMIN_KEY, BASE_NAME, free_port, wait_for

pytestmark = pytest.mark.e2e
SOURCES = "x-loraflow-sources"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"

# (file name, text, a question only that file answers, a phrase of the right chunk).
CORPUS = [
    ("parking.md", "# Parking\nStaff parking is in the underground garage on level B2. Visitors use the open lot "
     "beside the main entrance.", "Where can employees leave their cars?", "level B2"),
    ("vacation.md", "# Holidays\nEvery employee gets 27 days of paid vacation per year; unused days carry over until "
     "March.", "How many days off per year do I get?", "27 days"),
    ("wifi.txt", "The guest wireless network is called Orchard-Guest. Its password is printed on the reception desk.",
     "What is the name of the wifi for visitors?", "Orchard-Guest"),
    ("payroll.md", "# Payroll\nSalaries are paid on the 25th of each month by bank transfer.",
     "On which day of the month does my pay arrive?", "25th of each month"),
    ("badges.txt", "Lost badges must be reported to the security office in room 104 at once. A replacement costs 15 "
     "euros.", "I lost my access card, what should I do?", "room 104"),
    ("kitchen.jsonl", json.dumps({"text": "Fridges are emptied and cleaned every Friday at 4 pm.", "topic": "kitchen"}),
     "When is old food thrown out of the refrigerator?", "every Friday at 4 pm"),
]  # fmt: skip
REFUNDS = {
    "r-north": ("refunds.md", "# Refunds\nCustomers may ask for a refund within 30 days of delivery."),
    "r-south": ("refunds.md", "# Refunds\nCustomers may ask for a refund within 14 days of delivery."),
}
REFUND_QUESTION = "How long do I have to get my money back?"


class RagGateway:
    """An in-process gateway with retrieval on, attached to the session's engine; restartable on its var dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway: Gateway
        self._server: uvicorn.Server
        self._thread: threading.Thread
        self.start()

    def start(self) -> None:
        self.settings = self.settings.model_copy(update={"port": free_port()})
        self.gateway, self._server, self._thread = serve(self.settings)
        wait_for(f"{self.gateway.url}/ready", 120)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(60)

    def upload(self, tenant: str, *entries: tuple[str, str]) -> dict[str, str]:
        """{file name: document id}."""
        files = [("file", (name, text.encode(), "application/octet-stream")) for name, text in entries]
        response = self.gateway.admin("POST", f"/tenants/{tenant}/documents", files=files)
        assert response.status_code == 201, response.text
        return {doc["name"]: doc["id"] for doc in response.json()["data"]}


@pytest.fixture(scope="module")
def rag(engine, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RagGateway]:
    settings = Settings(
        var_dir=tmp_path_factory.mktemp("rag-var"),
        admin_key=ADMIN_KEY,
        secret_key="e2e-secret",
        base_model=str(tiny_model),
        served_model_name=BASE_NAME,
        engine=EngineSettings(urls=[engine.url], health_interval_s=0.5, max_lora_rank=16, drain_timeout_s=30),
        registry_poll_s=0.5,
        retrieval=RetrievalSettings(enabled=True, chunk_size=300, chunk_overlap=40, hnsw_threshold=2000),
    )
    server = RagGateway(settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def acme(rag: RagGateway) -> tuple[str, dict[str, str]]:
    key = rag.gateway.tenant("r-acme")
    return key, rag.upload("r-acme", *[(name, text) for name, text, _, _ in CORPUS])


def ask(rag: RagGateway, key: str, question: str, **kwargs: Any) -> Any:
    """A grounded chat completion through the official client: (the raw response, the parsed reply)."""
    raw = rag.gateway.client(key).chat.completions.with_raw_response.create(
        model=kwargs.pop("model", BASE_NAME), messages=[{"role": "user", "content": question}], max_tokens=4,
        temperature=0, extra_body={"retrieval": kwargs.pop("retrieval", {"top_k": 1})}, **kwargs,
    )  # fmt: skip
    return raw, raw.parse()


def test_a_grounded_request_holds_the_right_chunk_names_it_and_is_recorded_so(rag, acme):
    key, ids = acme
    for name, _, question, phrase in CORPUS:
        raw, reply = ask(rag, key, question)
        (source,) = reply.model_extra["retrieval"]["sources"]
        assert source["document_id"] == ids[name], (question, source)
        assert raw.headers[SOURCES] == str(source["id"])
        row = rag.gateway.interaction(reply.id)
        system, user = row.request["messages"]
        assert system["role"] == "system" and phrase in system["content"] and f"[1] ({name}" in system["content"]
        assert user == {"role": "user", "content": question}
        assert [chunk["id"] for chunk in row.retrieved] == [source["id"]] and phrase in row.retrieved[0]["text"]
        assert row.usage["prompt_tokens"] > 40  # the engine did read the context


def test_a_stream_names_its_sources_in_a_header_and_is_recorded_grounded(rag, acme):
    key, ids = acme
    raw = rag.gateway.client(key).chat.completions.with_raw_response.create(
        model=BASE_NAME, messages=[{"role": "user", "content": CORPUS[2][2]}], max_tokens=4, stream=True,
        extra_body={"retrieval": {"top_k": 2}},
    )  # fmt: skip
    chunks = list(raw.parse())
    sources = [int(part) for part in raw.headers[SOURCES].split(",")]
    row = rag.gateway.interaction(chunks[0].id)
    assert [chunk["id"] for chunk in row.retrieved] == sources and row.retrieved[0]["document_id"] == ids["wifi.txt"]
    assert "Orchard-Guest" in row.request["messages"][0]["content"] and row.outcome == "completed"


def test_an_alias_with_a_real_adapter_grounds_by_default(rag, acme, adapter_dirs):
    key, ids = acme
    assert rag.gateway.register("r-acme", "support", adapter_dirs["alpha"]).status_code == 201
    assert rag.gateway.promote("r-acme", "support", 1).status_code == 200
    options = {"options": {"retrieval": {"top_k": 1}}}
    assert rag.gateway.admin("PATCH", "/tenants/r-acme/adapters/support", json=options).status_code == 200
    reply = rag.gateway.client(key).chat.completions.create(
        model="support", messages=[{"role": "user", "content": CORPUS[3][2]}], max_tokens=4, temperature=0
    )
    assert reply.model == "support@1"
    assert [s["document_id"] for s in reply.model_extra["retrieval"]["sources"]] == [ids["payroll.md"]]
    assert rag.gateway.interaction(reply.id).adapter_version == "support@1"


def test_two_tenants_with_conflicting_documents_each_get_only_their_own(rag):
    answers = {}
    for tenant, (name, text) in REFUNDS.items():
        key = rag.gateway.tenant(tenant)
        ids = rag.upload(tenant, (name, text), ("hours.txt", f"The {tenant} office opens at 9 am."))
        _, reply = ask(rag, key, REFUND_QUESTION, retrieval={"top_k": 5, "min_score": -1})
        sources = reply.model_extra["retrieval"]["sources"]
        assert sources[0]["document_id"] == ids[name] and {s["document_id"] for s in sources} <= set(ids.values())
        answers[tenant] = rag.gateway.interaction(reply.id).request["messages"][0]["content"]
    assert "30 days" in answers["r-north"] and "14 days" not in answers["r-north"]
    assert "14 days" in answers["r-south"] and "30 days" not in answers["r-south"]


def test_embeddings_rank_paraphrases_above_unrelated_pairs(rag, acme):
    key, _ = acme
    pairs = [
        ("How do I reset my password?", "I forgot my password and need to change it."),
        ("The train to Paris leaves at noon.", "At 12 o'clock the Paris train departs."),
        ("What is the refund policy?", "Can I get my money back after buying?"),
    ]
    client = rag.gateway.client(key)
    texts = [text for pair in pairs for text in pair]
    reply = client.embeddings.create(model=EMBEDDING_MODEL, input=texts)  # the SDK asks for base64 and decodes
    assert reply.model == EMBEDDING_MODEL and reply.usage.total_tokens > len(texts)
    vectors = np.array([item.embedding for item in reply.data])
    as_floats = client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    assert np.allclose(vectors, [item.embedding for item in as_floats.data], atol=1e-6)
    similarity = vectors @ vectors.T
    for i in range(len(pairs)):
        paraphrase = similarity[2 * i, 2 * i + 1]
        unrelated = [similarity[2 * i, 2 * j + k] for j in range(len(pairs)) if j != i for k in (0, 1)]
        assert paraphrase > max(unrelated) + 0.1, (pairs[i], paraphrase, max(unrelated))


def test_a_rebuild_under_concurrent_grounded_queries_fails_none(rag):
    """HNSW rebuilds of a few thousand chunks (the answers stored after the bulk, so an index built part-way would
    miss them), three in a row, while grounded completions keep coming."""
    key = rag.gateway.tenant("r-bulk")
    service = rag.gateway.state.retrieval
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, service.embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # nearly orthogonal to any question: never the answer
    pieces = [Piece(i, 0, 6, f"filler {i}", None, {}) for i in range(len(vectors))]
    service.store.add("r-bulk", [ParsedDocument("filler.txt", "text", "0" * 64, 1, {}, pieces)], [vectors],
                      service.embedder.name)  # fmt: skip
    ids = rag.upload("r-bulk", *[(name, text) for name, text, _, _ in CORPUS])
    assert rag.gateway.admin("GET", "/tenants/r-bulk/index").json()["kind"] == "hnsw"
    outcomes: list[tuple[str, str | None]] = []
    seen_rebuilding = []

    async def asker(client: Any, offset: int, stop: asyncio.Event) -> None:
        i = offset
        while not stop.is_set():
            name, _, question, _ = CORPUS[i % len(CORPUS)]
            try:
                reply = await client.chat.completions.create(
                    model=BASE_NAME, messages=[{"role": "user", "content": question}], max_tokens=2,
                    extra_body={"retrieval": {"top_k": 1}},
                )  # fmt: skip
                got = reply.model_extra["retrieval"]["sources"][0]["document_id"]
                outcomes.append((ids[name], got))
            except Exception as exc:  # any failure is the finding
                outcomes.append((ids[name], repr(exc)))
            i += 1

    async def rebuilder(stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=f"{rag.gateway.url}/admin", timeout=60,
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:  # fmt: skip
            await asyncio.sleep(0.5)
            for _ in range(3):
                started = await admin.post("/tenants/r-bulk/documents/rebuild")
                assert started.status_code == 202
                if started.json()["state"] == "rebuilding":
                    seen_rebuilding.append(len(outcomes))
                while (state := (await admin.get("/tenants/r-bulk/index")).json()["state"]) == "rebuilding":
                    seen_rebuilding.append(len(outcomes))
                    await asyncio.sleep(0.05)
                assert state == "ready"
            await asyncio.sleep(0.5)
        stop.set()

    async def main() -> None:
        stop = asyncio.Event()
        client = rag.gateway.async_client(key)
        await asyncio.gather(rebuilder(stop), *(asker(client, i, stop) for i in range(4)))

    asyncio.run(main())
    assert len(outcomes) >= 20 and seen_rebuilding, (len(outcomes), seen_rebuilding)
    wrong = [(want, got) for want, got in outcomes if want != got]
    assert not wrong, wrong[:5]
    assert rag.gateway.admin("GET", "/tenants/r-bulk/index").json()["chunks"] == 3000 + len(CORPUS)


def test_the_index_survives_a_restart_without_reembedding(rag, acme, monkeypatch):
    key, ids = acme
    before = {question: ask(rag, key, question)[1].model_extra["retrieval"]["sources"] for _, _, question, _ in CORPUS}
    service = rag.gateway.state.retrieval
    service.wait(timeout=60)  # index files saved
    index_file = Path(service.indexes.path("r-acme"))
    saved = {path.name: path.stat().st_mtime_ns for path in index_file.iterdir()}
    embedded: list[int] = []
    embedder = service.embedder  # one per process: the restarted gateway gets the same object
    original = embedder.encode

    def counting(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        embedded.append(len(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(embedder, "encode", counting)

    rag.stop()
    rag.start()
    after = {question: ask(rag, key, question)[1].model_extra["retrieval"]["sources"] for _, _, question, _ in CORPUS}
    assert after == before
    assert embedded == []  # no chunk embedded again: the index was loaded, not rebuilt from text
    assert {path.name: path.stat().st_mtime_ns for path in index_file.iterdir()} == saved  # read, not rewritten
    listed = rag.gateway.admin("GET", "/tenants/r-acme/documents").json()["data"]
    assert {doc["name"]: doc["id"] for doc in listed} == ids
