import asyncio
import threading

import numpy as np
from conftest import corpus_uploads, questions

from retrieval.uploads import ParsedDocument, Piece, Upload


def add_filler(service, tenant, count, dim=384, seed=0):
    """`count` chunks with random unit vectors, stored without the model: bulk that makes a build take a while.
    Random directions in 384 dimensions are nearly orthogonal to any real question, so they never outrank an answer."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pieces = [Piece(i, 0, 6, f"filler {i}", None, {}) for i in range(count)]
    document = ParsedDocument("filler.txt", "text", "0" * 64, count, {}, pieces)
    service.store.add(tenant, [document], [vectors], service.embedder.name)


def test_queries_during_rebuilds_never_fail_and_never_see_a_partial_index(make_service, settings):
    # HNSW builds, the slow kind, of 1500 chunks: queries overlap them. The corpus is stored after the
    # filler, so an index built part-way (in id order) would lack the answers and fail the first-hit check.
    service = make_service(settings=settings.model_copy(update={"hnsw_threshold": 100}))
    add_filler(service, "acme", 1500)
    service.add_documents("acme", corpus_uploads())
    asked = questions()
    vectors = service.embedder.encode([q for q, _ in asked])
    expected = [name for _, name in asked]
    assert service.index_info("acme").kind == "hnsw"
    errors: list[BaseException] = []
    checked = [0]
    stop = threading.Event()

    def ask():
        while not stop.is_set():
            for vector, name in zip(vectors, expected, strict=True):
                try:
                    hits = service.search_vector("acme", vector, 10, None)
                    assert len(hits) == 10, f"{len(hits)} hits"
                    assert hits[0].document_name == name
                    checked[0] += 1
                except BaseException as exc:
                    errors.append(exc)
                    stop.set()

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    builds = [service.rebuild("acme") for _ in range(3)]  # asked for together: the waiting ones share one build
    assert builds[1] is builds[2]
    for build in builds:
        build.result(timeout=120)
    during = checked[0]
    # And through the async path, while another rebuild runs.
    late = service.rebuild("acme")
    hits = asyncio.run(service.retrieve("acme", asked[0][0], top_k=3))
    late.result(timeout=120)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert during > 10  # queries really did run while the builds did
    assert hits[0].document_name == expected[0]


def test_documents_added_while_a_rebuild_runs_are_in_the_index_it_swaps_in(make_service, settings):
    service = make_service(settings=settings.model_copy(update={"hnsw_threshold": 5}))
    service.add_documents("acme", corpus_uploads())
    started = threading.Event()
    release = threading.Event()

    def slow_progress(done, total):  # hold the build half-way until the add below has committed
        started.set()
        release.wait(30)

    build = service.rebuild("acme", progress=lambda stage, done, total: slow_progress(done, total))
    assert started.wait(30)
    service.add_documents("acme", [Upload("canteen.txt", "The canteen serves lunch from 11:30 to 14:00.")])
    release.set()
    build.result(timeout=60)
    info = service.index_info("acme")
    assert info.live == service.store.count("acme")
    hits = asyncio.run(service.retrieve("acme", "What time is lunch served?", top_k=1))
    assert hits[0].document_name == "canteen.txt"


def test_the_index_becomes_hnsw_at_the_threshold_and_flat_again_below_it(make_service, settings):
    service = make_service(settings=settings.model_copy(update={"hnsw_threshold": 10}))
    uploads = [
        Upload(f"fact{i}.txt", f"Fact number {i}: room {100 + i} holds the {w} archive.")
        for i, w in enumerate(["red", "blue", "green", "amber", "violet", "white", "black", "grey", "pink", "gold"])
    ]
    added = service.add_documents("acme", uploads[:9])
    service.wait()
    info = service.index_info("acme")
    assert (info.kind, info.live) == ("flat", 9)

    added += service.add_documents("acme", uploads[9:])
    service.wait()
    info = service.index_info("acme")
    assert (info.kind, info.live, info.rebuilding) == ("hnsw", 10, False)
    hits = asyncio.run(service.retrieve("acme", "Where is the gold archive?", top_k=1))
    assert hits[0].document_name == "fact9.txt"

    service.delete_document("acme", added[0].id)  # 9 live: still at least 90% of the threshold, HNSW stays
    service.wait()
    info = service.index_info("acme")
    assert (info.kind, info.live, info.tombstones) == ("hnsw", 9, 1)

    service.delete_document("acme", added[1].id)
    service.wait()
    info = service.index_info("acme")
    assert (info.kind, info.live, info.tombstones) == ("flat", 8, 0)
    hits = asyncio.run(service.retrieve("acme", "Where is the gold archive?", top_k=8))
    assert hits[0].document_name == "fact9.txt" and len(hits) == 8


def test_many_deletes_compact_an_hnsw_index(make_service, settings):
    service = make_service(settings=settings.model_copy(update={"hnsw_threshold": 3, "compact_ratio": 0.3}))
    added = service.add_documents("acme", [Upload(f"{i}.txt", f"Note {i} about subject {i}.") for i in range(8)])
    assert service.index_info("acme").kind == "hnsw"  # loaded: from now on deletes change it in place
    service.delete_document("acme", added[0].id)
    service.wait()
    assert service.index_info("acme").tombstones == 1
    service.delete_document("acme", added[1].id)
    service.delete_document("acme", added[2].id)
    service.wait()
    info = service.index_info("acme")
    assert (info.kind, info.live, info.tombstones) == ("hnsw", 5, 0)
