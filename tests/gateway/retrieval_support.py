"""Helpers of the retrieval tests: a gateway on the fake engine with retrieval on (the real embedding model, a tmp
var dir), a small corpus whose right answers are known, and short calls."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
from fastapi.testclient import TestClient

from feedback.settings import RecordSettings
from gateway.app import create_app
from retrieval.settings import RetrievalSettings
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import BASE, Env, make_settings

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
RETRIEVAL = {"enabled": True, "sync_interval_s": 0, "chunk_size": 300, "chunk_overlap": 40,
             "max_document_bytes": 4096, "max_documents_per_upload": 4}  # fmt: skip

# (file name, text, a question only that file answers, a phrase of its text).
CORPUS = [
    ("parking.md", "# Parking\nStaff parking is in the underground garage on level B2. Visitors use the open lot "
     "beside the main entrance.", "Where can employees leave their cars?", "level B2"),
    ("vacation.md", "# Holidays\nEvery employee gets 27 days of paid vacation per year; unused days carry over until "
     "March.", "How many days off per year do I get?", "27 days"),
    ("wifi.txt", "The guest wireless network is called Orchard-Guest. Its password is printed on the reception desk.",
     "What is the name of the wifi for visitors?", "Orchard-Guest"),
    ("payroll.md", "# Payroll\nSalaries are paid on the 25th of each month by bank transfer.",
     "On which day of the month does my pay arrive?", "25th of each month"),
]  # fmt: skip


@contextlib.contextmanager
def open_env(tmp_path: Path, **retrieval: Any) -> Iterator[Env]:
    """A gateway on the fake engine; retrieval on unless `enabled=False`."""
    engine = FakeEngine(BASE)
    settings = make_settings(
        tmp_path,
        retrieval=RetrievalSettings(**{**RETRIEVAL, **retrieval}),
        record=RecordSettings(lookup_wait_s=0.3, flush_interval_s=0.01),
    )
    app = create_app(settings, transport=httpx.ASGITransport(engine.app))
    with TestClient(app) as client:
        env = Env(client, engine, settings)
        env.wait_ready()
        yield env


def files(*entries: tuple[str, str | bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart `file` fields for httpx."""
    return [("file", (name, text.encode() if isinstance(text, str) else text, "application/octet-stream"))
            for name, text in entries]  # fmt: skip


def upload(env: Env, tenant: str, *entries: tuple[str, str | bytes], **data: str) -> httpx.Response:
    return env.admin("POST", f"/tenants/{tenant}/documents", files=files(*entries), data=data or None)


def tenant_with_corpus(env: Env, tenant: str) -> tuple[str, dict[str, str]]:
    """A tenant with a key and the corpus stored: (key, {file name: document id})."""
    key = env.tenant_with_key(tenant)
    response = upload(env, tenant, *[(name, text) for name, text, _, _ in CORPUS])
    assert response.status_code == 201, response.text
    return key, {doc["name"]: doc["id"] for doc in response.json()["data"]}


def sdk(env: Env, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sent_messages(env: Env) -> list[dict[str, Any]]:
    """The messages of the last request the engine received."""
    return env.engine.requests[-1]["messages"]


def chat(env: Env, key: str, question: str, **body: Any) -> httpx.Response:
    payload = {"model": BASE, "messages": [{"role": "user", "content": question}], **body}
    return env.client.post("/v1/chat/completions", json=payload, headers=bearer(key))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
