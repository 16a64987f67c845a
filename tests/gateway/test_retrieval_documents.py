"""The documents admin API: uploads all or nothing, listing and paging, chunks, deletes that queries honour,
another tenant's document and unknown tenants 404, size limits 413, background rebuilds."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.gateway.conftest import Env
from tests.gateway.retrieval_support import CORPUS, chat, files, open_env, upload

KITCHEN = "\n".join(json.dumps(line) for line in [
    {"text": "The coffee machine is descaled every Monday morning.", "topic": "kitchen"},
    {"text": "Fridges are emptied and cleaned every Friday at 4 pm.", "metadata": {"owner": "ops"}},
]) + "\n"  # fmt: skip


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One gateway with retrieval on for the module (the embedding model loads once per process anyway)."""
    with open_env(tmp_path_factory.mktemp("rag")) as env:
        yield env


def documents(env: Env, tenant: str, **params) -> dict:
    response = env.admin("GET", f"/tenants/{tenant}/documents", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def index(env: Env, tenant: str) -> dict:
    return env.admin("GET", f"/tenants/{tenant}/index").json()


def test_several_files_are_stored_with_their_chunks_and_metadata(rag):
    rag.tenant_with_key("d-acme")
    response = upload(rag, "d-acme", ("notes/parking.md", CORPUS[0][1]), ("wifi.txt", CORPUS[2][1]),
                      ("kitchen.jsonl", KITCHEN), metadata=json.dumps({"team": "facilities"}))  # fmt: skip
    assert response.status_code == 201, response.text
    stored = response.json()["data"]
    assert [(d["name"], d["kind"], d["existing"]) for d in stored] == [
        ("notes/parking.md", "markdown", False), ("wifi.txt", "text", False), ("kitchen.jsonl", "jsonl", False),
    ]  # fmt: skip
    assert all(d["metadata"] == {"team": "facilities"} and d["chunk_count"] >= 1 for d in stored)
    assert stored[0]["embedding_model"] == "all-MiniLM-L6-v2" and "chunks" not in stored[0]
    kitchen = rag.admin("GET", f"/tenants/d-acme/documents/{stored[2]['id']}", params={"chunks": "true"}).json()
    assert [(c["position"], c["line"]) for c in kitchen["chunks"]] == [(0, 1), (1, 2)]
    assert kitchen["chunks"][1]["metadata"] == {"team": "facilities", "owner": "ops"}
    assert kitchen["chunks"][0]["text"].startswith("The coffee machine")
    assert [d["id"] for d in documents(rag, "d-acme")["data"]] == [d["id"] for d in stored]
    assert index(rag, "d-acme") | {"generation": 0} == {
        "object": "index", "tenant_id": "d-acme", "kind": "flat", "chunks": sum(d["chunk_count"] for d in stored),
        "tombstones": 0, "generation": 0, "embedding_model": "all-MiniLM-L6-v2", "state": "ready"}  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "code"),
    [(("report.pdf", b"%PDF-1.4 ..."), "unsupported_file_type"), (("empty.txt", "  \n"), "empty_document"),
     (("lines.jsonl", '{"text": "ok"}\n{"title": "no text"}\n'), "invalid_jsonl"),
     (("latin1.txt", "caf\xe9".encode("latin-1")), "unsupported_file_type")],
)  # fmt: skip
def test_one_bad_file_stores_nothing_of_the_upload(rag, bad, code):
    rag.tenant_with_key("d-atomic")
    before = documents(rag, "d-atomic")["data"]
    response = upload(rag, "d-atomic", ("good.txt", f"A good document about {code}."), bad)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == bad[0] and bad[0] in error["message"]
    assert documents(rag, "d-atomic")["data"] == before
    assert index(rag, "d-atomic")["chunks"] == sum(d["chunk_count"] for d in before)


def test_the_same_file_again_is_not_stored_twice_and_replace_makes_a_new_version(rag):
    key = rag.tenant_with_key("d-versions")
    first = upload(rag, "d-versions", ("refunds.md", "Refunds are accepted within 30 days.")).json()["data"][0]
    again = upload(rag, "d-versions", ("refunds.md", "Refunds are accepted within 30 days.")).json()["data"][0]
    assert again["existing"] and again["id"] == first["id"]
    new = upload(rag, "d-versions", ("refunds.md", "Refunds are accepted within 14 days."), replace="true")
    assert new.status_code == 201 and not new.json()["data"][0]["existing"]
    assert [d["id"] for d in documents(rag, "d-versions")["data"]] == [new.json()["data"][0]["id"]]
    body = chat(rag, key, "How long is the refund period?", retrieval={"top_k": 5, "min_score": -1}).json()
    assert [s["document_id"] for s in body["retrieval"]["sources"]] == [new.json()["data"][0]["id"]]
    assert "14 days" in rag.engine.requests[-1]["messages"][0]["content"]


def test_a_deleted_document_is_never_retrieved_again(rag):
    key = rag.tenant_with_key("d-delete")
    stored = upload(rag, "d-delete", ("wifi.txt", CORPUS[2][1]), ("payroll.md", CORPUS[3][1])).json()["data"]
    wifi = stored[0]
    deleted = rag.admin("DELETE", f"/tenants/d-delete/documents/{wifi['id']}")
    assert deleted.json() == {"id": wifi["id"], "object": "document.deleted", "deleted": True, "name": "wifi.txt",
                              "chunk_count": wifi["chunk_count"]}  # fmt: skip
    missing = rag.admin("GET", f"/tenants/d-delete/documents/{wifi['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found"
    assert rag.admin("DELETE", f"/tenants/d-delete/documents/{wifi['id']}").status_code == 404
    body = chat(rag, key, CORPUS[2][2], retrieval={"top_k": 5, "min_score": -1}).json()
    assert {s["document_id"] for s in body["retrieval"]["sources"]} == {stored[1]["id"]}
    assert "Orchard-Guest" not in rag.engine.requests[-1]["messages"][0]["content"]


def test_another_tenants_document_and_unknown_tenants_are_404(rag):
    rag.tenant_with_key("d-owner")
    rag.tenant_with_key("d-other")
    doc = upload(rag, "d-owner", ("secret.txt", "The launch date is the 3rd of May.")).json()["data"][0]
    for method in ("GET", "DELETE"):
        response = rag.admin(method, f"/tenants/d-other/documents/{doc['id']}")
        assert response.status_code == 404 and "d-owner" not in response.text
    assert rag.admin("GET", f"/tenants/d-owner/documents/{doc['id']}").status_code == 200  # still there
    for method, path in (("GET", "/documents"), ("GET", "/index"), ("POST", "/documents/rebuild"),
                         ("GET", f"/documents/{doc['id']}")):  # fmt: skip
        response = rag.admin(method, f"/tenants/d-nobody{path}")
        assert response.status_code == 404 and response.json()["error"]["param"] == "tenant"
    response = upload(rag, "d-nobody", ("a.txt", "text"))
    assert response.status_code == 404


def test_size_limits_are_413(rag):
    rag.tenant_with_key("d-limits")
    limits = rag.settings.retrieval
    big = upload(rag, "d-limits", ("big.txt", "x" * (limits.max_document_bytes + 1)))
    assert big.status_code == 413 and big.json()["error"]["code"] == "document_too_large"
    many = upload(rag, "d-limits", *[(f"{i}.txt", f"document {i}") for i in range(limits.max_documents_per_upload + 1)])
    assert many.status_code == 413 and many.json()["error"]["code"] == "too_many_documents"
    # The body limit: every document at its largest, plus room for the multipart framing.
    huge = upload(rag, "d-limits", *[(f"{i}.txt", "y" * 40_000) for i in range(3)])
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    # Also without a declared length (chunked): refused once it passes the limit.
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n' + b"z" * 200_000

    def chunks():
        for begin in range(0, len(body), 8192):
            yield body[begin : begin + 8192]

    chunked = rag.admin("POST", "/tenants/d-limits/documents", content=chunks(),
                        headers={"Content-Type": "multipart/form-data; boundary=b"})  # fmt: skip
    assert chunked.status_code == 413
    assert documents(rag, "d-limits")["data"] == []


def test_a_bad_form_is_400(rag):
    rag.tenant_with_key("d-forms")
    path = "/tenants/d-forms/documents"
    assert rag.admin("POST", path, json={"text": "hello"}).json()["error"]["param"] == "file"
    assert rag.admin("POST", path, data={"replace": "true"}, files=[("other", ("a.txt", b"x"))]).status_code == 400
    bad_metadata = upload(rag, "d-forms", ("a.txt", "text"), metadata="[1, 2]")
    assert bad_metadata.status_code == 400 and bad_metadata.json()["error"]["param"] == "metadata"
    assert upload(rag, "d-forms", ("a.txt", "text"), replace="maybe").json()["error"]["param"] == "replace"
    unauthenticated = rag.client.post(f"/admin{path}", files=files(("a.txt", "text")))
    assert unauthenticated.status_code == 401


def test_listing_pages_by_id(rag):
    rag.tenant_with_key("d-pages")
    stored = upload(rag, "d-pages", *[(f"{i}.txt", f"page test document number {i}") for i in range(3)]).json()["data"]
    first = documents(rag, "d-pages", limit=2)
    assert [d["id"] for d in first["data"]] == [d["id"] for d in stored[:2]] and first["has_more"]
    second = documents(rag, "d-pages", limit=2, after=first["last_id"])
    assert [d["id"] for d in second["data"]] == [stored[2]["id"]] and not second["has_more"]
    assert rag.admin("GET", "/tenants/d-pages/documents", params={"limit": 0}).status_code == 400


def test_rebuild_returns_at_once_and_queries_go_on(rag):
    key = rag.tenant_with_key("d-rebuild")
    upload(rag, "d-rebuild", *[(name, text) for name, text, _, _ in CORPUS])
    before = index(rag, "d-rebuild")
    started = rag.admin("POST", "/tenants/d-rebuild/documents/rebuild")
    assert started.status_code == 202 and started.json()["chunks"] == before["chunks"]
    assert started.json()["state"] in ("rebuilding", "ready")
    for _, _, question, phrase in CORPUS:  # while it runs, and after
        chat(rag, key, question, retrieval={"top_k": 1})
        assert phrase in rag.engine.requests[-1]["messages"][0]["content"]
    rag.client.app.state.gateway.retrieval.wait(timeout=60)
    assert index(rag, "d-rebuild") | {"generation": 0} == before | {"generation": 0}
