import asyncio
import threading
import time

import numpy as np
import pytest

from retrieval.embedder import shared_embedder
from retrieval.settings import RetrievalSettings

PARAPHRASES = [
    ("How do I reset my password?", "What are the steps to change a forgotten password?"),
    ("The train was late this morning.", "This morning the train did not arrive on time."),
    ("Where is the nearest pharmacy?", "Can you tell me where I can find a drugstore close by?"),
]
UNRELATED = [
    ("How do I reset my password?", "Bananas are rich in potassium."),
    ("The train was late this morning.", "The invoice total includes VAT."),
    ("Where is the nearest pharmacy?", "Our team won the chess tournament."),
]


@pytest.fixture(scope="module")
def embedder():
    embedder = shared_embedder(RetrievalSettings(enabled=True))
    embedder.load()
    return embedder


def test_the_same_model_is_shared_by_every_service_of_the_process(embedder):
    assert shared_embedder(RetrievalSettings(enabled=True, chunk_size=500)) is embedder


def test_vectors_are_normalised_float32(embedder):
    vectors = embedder.encode(["one", "two", "three"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_pairs(embedder):
    def cosine(a: str, b: str) -> float:
        x, y = embedder.encode([a, b])
        return float(x @ y)

    weakest_paraphrase = min(cosine(a, b) for a, b in PARAPHRASES)
    strongest_unrelated = max(cosine(a, b) for a, b in UNRELATED)
    assert weakest_paraphrase > 0.5 > strongest_unrelated
    assert weakest_paraphrase - strongest_unrelated > 0.3


def test_concurrent_async_calls_get_the_vectors_of_their_own_texts(embedder):
    texts = [f"question number {i} about item {i * 7}" for i in range(24)]
    expected = embedder.encode(texts)

    async def main():
        return await asyncio.gather(*(embedder.embed([text]) for text in texts))

    results = asyncio.run(main())
    for got, want in zip(results, expected, strict=True):
        assert got.shape == (1, 384)
        assert float(got[0] @ want) > 0.9999


def test_embedding_does_not_block_the_event_loop(embedder):
    texts = [f"a longer sentence number {i} that takes the model a little while to read" for i in range(48)]

    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def tick():
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        await embedder.embed_counting(texts)
        elapsed = time.monotonic() - started
        stop.set()
        await ticker
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main())
    assert ticks >= min(10, elapsed / 0.01 / 4)


def test_a_query_goes_ahead_of_an_upload_being_embedded(embedder, monkeypatch):
    monkeypatch.setattr(embedder, "batch_size", 4)  # many small indexing batches: the query can pass them
    bulk_texts = [f"document chunk {i} with a handful of words in it, to keep the model busy" for i in range(64)]
    bulk_done = threading.Event()
    started = threading.Event()

    def upload():
        embedder.encode(bulk_texts, progress=lambda done, total: started.set())
        bulk_done.set()

    thread = threading.Thread(target=upload)
    thread.start()
    assert started.wait(30)
    asyncio.run(embedder.embed(["a question asked meanwhile"]))
    assert not bulk_done.is_set()  # the query did not wait for the whole upload
    thread.join()


def test_token_counts_follow_the_tokenizer_and_stop_at_the_model_limit(embedder):
    vectors, counts = asyncio.run(embedder.embed_counting(["hello world", "word " * 1000]))
    assert vectors.shape == (2, 384)
    assert counts == [4, embedder.max_tokens]  # [CLS] hello world [SEP]; the long one is cut
