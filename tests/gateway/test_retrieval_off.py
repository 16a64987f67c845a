"""A gateway started without retrieval: asking for it is a clear 400, its embedding model does not exist, and the
process never imports torch, FAISS or sentence-transformers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import openai
import pytest

from tests.gateway.conftest import BASE
from tests.gateway.retrieval_support import EMBEDDING_MODEL, chat, open_env, sdk, upload

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def off(tmp_path):
    with open_env(tmp_path, enabled=False) as env:
        yield env


def test_a_grounded_request_is_400_retrieval_disabled(off):
    key = off.tenant_with_key("o-acme")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(off, key).chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": "hi"}], extra_body={"retrieval": {"top_k": 2}}
        )
    assert caught.value.body["code"] == "retrieval_disabled" and "LORAFLOW_RETRIEVAL__ENABLED" in caught.value.message
    assert off.engine.requests == []  # refused before the engine
    over = chat(off, key, "hi", retrieval={"top_k": 30})  # the reason that matters first, not the range
    assert over.json()["error"]["code"] == "retrieval_disabled"
    # An alias that grounds by default cannot be served as promised either; `null` opts out.
    off.admin("POST", "/tenants/o-acme/adapters", json={"alias": "kb", "options": {"retrieval": {"top_k": 2}}})
    assert chat(off, key, "hi", model="kb").json()["error"]["code"] == "retrieval_disabled"
    plain = chat(off, key, "hi", model="kb", retrieval=None)
    assert plain.status_code == 200 and "retrieval" not in plain.json()


def test_embeddings_model_does_not_exist_and_documents_api_says_why(off):
    key = off.tenant_with_key("o-acme")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(off, key).embeddings.create(model=EMBEDDING_MODEL, input="hello")
    assert caught.value.body["code"] == "model_not_found"
    assert EMBEDDING_MODEL not in {m.id for m in sdk(off, key).models.list()}
    for response in (upload(off, "o-acme", ("a.txt", "text")), off.admin("GET", "/tenants/o-acme/documents"),
                     off.admin("GET", "/tenants/o-acme/index"), off.admin("POST", "/tenants/o-acme/documents/rebuild"),
                     off.admin("DELETE", "/tenants/o-acme/documents/doc_1")):  # fmt: skip
        assert response.status_code == 400 and response.json()["error"]["code"] == "retrieval_disabled"
    assert off.client.get("/ready").json()["retrieval"] == "off"


def test_a_gateway_without_retrieval_never_imports_torch(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import httpx
        from fastapi.testclient import TestClient
        from gateway.app import create_app
        from gateway.settings import EngineSettings, Settings
        from tests.fake_engine import FakeEngine

        settings = Settings(var_dir=Path({str(tmp_path)!r}), admin_key="k", secret_key="s", base_model="{BASE}",
                            engine=EngineSettings(urls=["http://engine-a"]))
        app = create_app(settings, transport=httpx.ASGITransport(FakeEngine("{BASE}").app))
        with TestClient(app) as client:
            admin = {{"Authorization": "Bearer k"}}
            client.post("/admin/tenants", json={{"id": "acme"}}, headers=admin)
            key = client.post("/admin/tenants/acme/keys", json={{}}, headers=admin).json()["key"]
            tenant = {{"Authorization": "Bearer " + key}}
            body = {{"model": "{BASE}", "messages": [{{"role": "user", "content": "hi"}}], "retrieval": {{}}}}
            assert client.post("/v1/chat/completions", json=body, headers=tenant).status_code == 400
            embedding = {{"model": "x", "input": "hi"}}
            assert client.post("/v1/embeddings", json=embedding, headers=tenant).status_code == 404
            assert client.get("/admin/tenants/acme/documents", headers=admin).status_code == 400
        heavy = {{"torch", "faiss", "sentence_transformers", "transformers", "retrieval.service", "retrieval.embedder"}}
        print(sorted(heavy & set(sys.modules)))
    """)  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
