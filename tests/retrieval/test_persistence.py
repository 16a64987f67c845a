import asyncio

import pytest
from conftest import corpus_uploads, questions

from retrieval.uploads import Upload


def answers(service, tenant="acme"):
    async def main():
        return [[h.chunk_id for h in await service.retrieve(tenant, q, top_k=3)] for q, _ in questions()[::3]]

    return asyncio.run(main())


@pytest.fixture
def count_encodes(monkeypatch):
    """How many texts the shared embedder is asked to embed in bulk from now on (re-embedding shows up here)."""
    from retrieval.embedder import shared_embedder
    from retrieval.settings import RetrievalSettings

    embedder = shared_embedder(RetrievalSettings(enabled=True))
    counted = {"texts": 0}
    real = embedder.encode

    def encode(texts, progress=None):
        counted["texts"] += len(texts)
        return real(texts, progress)

    monkeypatch.setattr(embedder, "encode", encode)
    return counted


@pytest.mark.parametrize("threshold", [1000, 5], ids=["flat", "hnsw"])
def test_a_new_process_serves_the_same_results_from_the_saved_index(make_service, settings, count_encodes, threshold):
    settings = settings.model_copy(update={"hnsw_threshold": threshold})
    first = make_service(settings=settings)
    first.add_documents("acme", corpus_uploads())
    before = answers(first)
    first.close()
    assert (first.indexes.path("acme") / "index.faiss").exists()

    count_encodes["texts"] = 0
    second = make_service(settings=settings)
    assert answers(second) == before
    assert count_encodes["texts"] == 0  # nothing embedded again
    assert second.index_info("acme").kind == ("hnsw" if threshold == 5 else "flat")


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_index_files_are_rebuilt_from_the_database(make_service, count_encodes, damage):
    first = make_service()
    first.add_documents("acme", corpus_uploads())
    before = answers(first)
    first.close()
    path = first.indexes.path("acme") / "index.faiss"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"not a faiss index")

    count_encodes["texts"] = 0
    second = make_service()
    assert answers(second) == before
    assert count_encodes["texts"] == 0  # rebuilt from the stored vectors, not re-embedded
    second.wait()
    third = make_service()
    assert answers(third) == before  # and the rebuilt file was saved again


def test_a_stale_index_file_catches_up_with_changes_made_while_it_was_not_loaded(make_service):
    first = make_service()
    added = first.add_documents("acme", corpus_uploads())
    answers(first)
    first.close()
    # Another process (say `loraflow docs add`) changes the documents while nobody holds the index.
    other = make_service(index_dir=first.indexes.root.parent / "elsewhere")
    other.delete_document("acme", added[0].id)
    other.add_documents("acme", [Upload("canteen.txt", "The canteen serves lunch from 11:30 to 14:00.")])

    second = make_service()
    hits = asyncio.run(second.retrieve("acme", "What time is lunch served?", top_k=20))
    assert hits[0].document_name == "canteen.txt"
    assert added[0].id not in {h.document_id for h in hits}
    assert len(hits) == second.store.count("acme")


def test_a_loaded_index_picks_up_changes_made_by_another_replica(make_service, tmp_path):
    replica_a = make_service(index_dir=tmp_path / "a")
    replica_b = make_service(index_dir=tmp_path / "b")
    added = replica_a.add_documents("acme", corpus_uploads())
    assert answers(replica_b)  # b has loaded the index

    replica_a.delete_document("acme", added[0].id)
    replica_a.add_documents("acme", [Upload("canteen.txt", "The canteen serves lunch from 11:30 to 14:00.")])
    hits = asyncio.run(replica_b.retrieve("acme", "What time is lunch served?", top_k=20))
    assert hits[0].document_name == "canteen.txt"
    assert added[0].id not in {h.document_id for h in hits}
    assert replica_b.index_info("acme").live == replica_b.store.count("acme")


def test_a_changed_embedding_model_setting_reembeds_at_load(make_service, settings, count_encodes, sqlite_db):
    first = make_service()
    first.add_documents("acme", [Upload("policy.txt", "Refunds within 14 days.")])
    first.close()
    from retrieval.models import DocumentRow

    with sqlite_db.begin() as connection:  # as if the documents had been embedded by another model
        connection.execute(DocumentRow.__table__.update().values(embedding_model="old-model"))
    count_encodes["texts"] = 0
    second = make_service()
    hits = asyncio.run(second.retrieve("acme", "refund period"))
    assert [h.text for h in hits] == ["Refunds within 14 days."]
    assert count_encodes["texts"] == 1
    assert second.get_document("acme", hits[0].document_id).embedding_model == "all-MiniLM-L6-v2"
