import asyncio

import pytest
from conftest import corpus_uploads
from sqlalchemy import func, select

from retrieval.errors import (
    BadJSONLine,
    DocumentNotFound,
    DocumentTooLarge,
    EmptyDocument,
    TooManyDocuments,
    UnsupportedFileType,
)
from retrieval.models import ChunkRow, CollectionRow, DocumentRow
from retrieval.settings import RetrievalSettings
from retrieval.uploads import Upload

QUESTION = "Where can employees leave their cars?"


def rows(engine, model):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def test_documents_are_added_listed_read_and_deleted_on_either_database(db, make_service):
    service = make_service(engine=db)
    added = service.add_documents("acme", corpus_uploads())
    assert [d.name for d in added] == [u.name for u in corpus_uploads()]
    assert all(not d.existing and d.chunk_count >= 1 for d in added)
    listed = service.list_documents("acme")
    assert [d.id for d in listed] == [d.id for d in added]  # oldest first
    page = service.list_documents("acme", limit=3, after=listed[2].id)
    assert [d.id for d in page] == [d.id for d in listed[3:6]]
    kitchen = service.get_document("acme", added[-1].id)
    assert kitchen.kind == "jsonl" and kitchen.chunk_count == 2 and kitchen.created_at.tzinfo is not None
    assert next(c.text for c in service.document_chunks("acme", kitchen.id)).startswith("The coffee machine")

    deleted = service.delete_document("acme", added[0].id)
    assert deleted.name == "parking.md"
    assert [d.id for d in service.list_documents("acme")] == [d.id for d in added[1:]]
    assert rows(db, ChunkRow) == sum(d.chunk_count for d in added[1:])
    hits = asyncio.run(service.retrieve("acme", QUESTION, top_k=20))
    assert added[0].id not in {h.document_id for h in hits}


def test_another_tenants_document_does_not_exist_for_you(make_service):
    service = make_service()
    document = service.add_documents("acme", [Upload("a.txt", "hello there")])[0]
    for call in (service.get_document, service.delete_document, service.document_chunks):
        with pytest.raises(DocumentNotFound):
            call("intruder", document.id)
    assert service.list_documents("intruder") == []
    assert service.get_document("acme", document.id).id == document.id


@pytest.mark.parametrize("threshold", [1000, 5], ids=["flat", "hnsw"])
def test_a_deleted_document_is_never_returned_again(make_service, settings, threshold):
    service = make_service(settings=settings.model_copy(update={"hnsw_threshold": threshold}))
    added = service.add_documents("acme", corpus_uploads())
    service.wait()
    assert service.index_info("acme").kind == ("hnsw" if threshold == 5 else "flat")
    parking = next(d for d in added if d.name == "parking.md")
    assert asyncio.run(service.retrieve("acme", QUESTION, top_k=1))[0].document_id == parking.id

    service.delete_document("acme", parking.id)
    hits = asyncio.run(service.retrieve("acme", QUESTION, top_k=20))
    assert parking.id not in {h.document_id for h in hits}
    assert len(hits) == sum(d.chunk_count for d in added) - parking.chunk_count  # the rest are all still there


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (Upload("report.pdf", b"%PDF-1.7"), UnsupportedFileType),
        (Upload("empty.md", "   "), EmptyDocument),
        (Upload("huge.txt", "x" * 5001), DocumentTooLarge),
        (Upload("rows.jsonl", '{"text": "fine"}\n{"text": "broken"'), BadJSONLine),
    ],
)
def test_an_upload_with_one_bad_file_stores_none_of_them(make_service, settings, sqlite_db, bad, error):
    service = make_service(settings=settings.model_copy(update={"max_document_bytes": 5000}))
    with pytest.raises(error):
        service.add_documents("acme", [Upload("good.txt", "Staff parking is on level B2."), bad])
    assert service.list_documents("acme") == []
    assert (rows(sqlite_db, DocumentRow), rows(sqlite_db, ChunkRow), rows(sqlite_db, CollectionRow)) == (0, 0, 0)
    assert asyncio.run(service.retrieve("acme", QUESTION)) == []


def test_too_many_files_in_one_upload_store_nothing(make_service, settings, sqlite_db):
    service = make_service(settings=settings.model_copy(update={"max_documents_per_upload": 2}))
    with pytest.raises(TooManyDocuments):
        service.add_documents("acme", [Upload(f"{i}.txt", "hello") for i in range(3)])
    assert rows(sqlite_db, DocumentRow) == 0


def test_a_failure_while_storing_leaves_nothing_behind(make_service, sqlite_db, monkeypatch):
    service = make_service()
    real = service.store._bump

    def failing(session, tenant_id):
        real(session, tenant_id)
        raise RuntimeError("database went away")

    monkeypatch.setattr(service.store, "_bump", failing)
    with pytest.raises(RuntimeError):
        service.add_documents("acme", corpus_uploads())
    assert (rows(sqlite_db, DocumentRow), rows(sqlite_db, ChunkRow)) == (0, 0)
    monkeypatch.undo()
    assert asyncio.run(service.retrieve("acme", QUESTION)) == []


def test_the_same_file_twice_is_stored_once_and_replace_swaps_a_new_version_in(make_service):
    service = make_service()
    first = service.add_documents("acme", [Upload("policy.txt", "Refunds within 14 days.")])[0]
    again = service.add_documents("acme", [Upload("policy.txt", "Refunds within 14 days.")])[0]
    assert again.existing and again.id == first.id
    assert len(service.list_documents("acme")) == 1

    newer = service.add_documents("acme", [Upload("policy.txt", "Refunds within 30 days.")], replace=True)[0]
    assert not newer.existing and [d.id for d in service.list_documents("acme")] == [newer.id]
    hits = asyncio.run(service.retrieve("acme", "refund period", top_k=5))
    assert [h.text for h in hits] == ["Refunds within 30 days."]


def test_deleting_a_tenant_removes_its_documents_and_index_files(make_service):
    service = make_service()
    service.add_documents("acme", corpus_uploads())
    asyncio.run(service.retrieve("acme", QUESTION))
    service.wait()
    path = service.indexes.path("acme")
    assert (path / "index.faiss").exists()
    assert service.delete_tenant("acme") == len(corpus_uploads())
    assert not path.exists()
    assert service.list_documents("acme") == []
    assert asyncio.run(service.retrieve("acme", QUESTION)) == []


def test_index_directories_are_safe_for_any_tenant_id(make_service):
    service = make_service()
    root = service.indexes.root
    assert service.indexes.path("acme-1") == root / "acme-1"
    for odd in ("../etc", "a/b", ".hidden", "x" * 100, "ünï"):
        path = service.indexes.path(odd)
        assert path.parent == root and path.name.startswith("t_")


def test_settings_refuse_an_overlap_larger_than_half_a_chunk():
    with pytest.raises(ValueError):
        RetrievalSettings(chunk_size=100, chunk_overlap=60)
