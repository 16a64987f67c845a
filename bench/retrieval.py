"""Retrieval at 10k and 100k chunks: query latency, HNSW recall@10 against the exact index, build and load times.

    python bench/retrieval.py [--sizes 10000 100000] [--unique 10000] [--queries 200] [--quick]

Per size, on a fresh SQLite database and var dir, through the same `RetrievalService` the gateway uses:
- retrieval stage latency p50/p99, one client and 8 concurrent: `await service.retrieve()` = embed the question
  on the embedder thread + FAISS search + reading the hits back from the database; with the split embed | search;
- HNSW recall@10 against exact search (IndexFlatIP) for a sweep of efSearch, with search latency per value;
- build times: exact and HNSW index from vectors, the service's first load (a build from the database), saving,
  and a restart loading the saved file.

The corpus is synthetic knowledge-base text (products x topics, ~500 characters a chunk). Embedding 100k chunks
on CPU takes a long time, so `--unique` chunks are embedded for real and larger sizes are filled with noisy copies
of their vectors (cosine ~0.85 to the original, re-normalised); the output says how many are real. The corpus
vectors are kept in var/bench/ for later runs; embedding throughput is timed on 500 chunks every run.

Results go to bench/results/retrieval.{json,md}. Stages are plain functions returning dicts, collected in
`run()`: a later stage (e.g. time to first token with and without retrieval through the gateway) is one more
function and one more key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from gateway.store.db import make_engine, migrate  # noqa: E402
from retrieval.embedder import shared_embedder  # noqa: E402
from retrieval.index import HnswParams, TenantIndex  # noqa: E402
from retrieval.service import RetrievalService  # noqa: E402
from retrieval.settings import RetrievalSettings  # noqa: E402
from retrieval.uploads import ParsedDocument, Piece  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TENANT = "bench"
RECALL_TARGET = 0.95
COPY_COSINE = 0.85
THROUGHPUT_SAMPLE = 500  # chunks embedded with the clock on, every run
DOCUMENT_CHUNKS = 1000  # chunks per stored document

# Synthetic knowledge base

# Word lists as strings: easier to read and extend than one quoted word a line.
ADJECTIVES = "Orbit Nimbus Quartz Falcon Harbor Summit Aurora Cobalt Ember Vertex Lumen Atlas Delta Crest".split()  # noqa: SIM905
NOUNS = "Router Backup Tracker Camera Scanner Gateway Thermostat Speaker Printer Monitor Drive Hub Lock".split()  # noqa: SIM905
CITIES = "Lisbon Oslo Austin Nairobi Osaka Lyon Denver Porto Krakow Dublin Seoul Quito Perth Tallinn".split()  # noqa: SIM905
TOPICS: dict[str, list[str]] = {
    "warranty": [
        "The {p} is covered by a {n}-year limited warranty from the date of purchase.",
        "Warranty claims for the {p} are handled by the {c} service centre within {m} business days.",
        "Damage caused by water or drops is not covered unless the Care Plus plan was bought within {m} days.",
    ],
    "pricing": [
        "The {p} costs {price} euros in the standard edition and {price2} euros with the pro bundle.",
        "Volume discounts for the {p} start at {n}0 units and reach {m} percent above 500 units.",
        "Prices for the {p} in the {c} region include local taxes but not shipping.",
    ],
    "shipping": [
        "Orders of the {p} ship from the {c} warehouse within {n} business days.",
        "Express delivery of the {p} is available to most cities for a fee of {m} euros.",
        "Tracking numbers for the {p} are emailed once the parcel leaves {c}.",
    ],
    "setup": [
        "To set up the {p}, hold the pairing button for {n} seconds until the light blinks blue.",
        "The {p} needs firmware {n}.{m} or later before it can join a mesh network.",
        "A quick start guide for the {p} is printed inside the lid of the box.",
    ],
    "troubleshooting": [
        "If the {p} does not power on, charge it for {n} hours and try again.",
        "A red light on the {p} means the sensor failed its self-test; restart it before calling support.",
        "Resetting the {p} to factory settings erases all saved profiles after {m} seconds.",
    ],
    "security": [
        "The {p} encrypts stored data with AES-256 and rotates its keys every {n} days.",
        "Security updates for the {p} are published on the first Tuesday of each month from {c}.",
        "Two-factor sign-in can be enforced for every {p} in an account from the admin console.",
    ],
    "returns": [
        "An unused {p} can be returned within {m} days for a full refund.",
        "Returns of the {p} are inspected at the {c} depot before the refund is issued.",
        "Opened {p} units are refunded minus a restocking fee of {n} percent.",
    ],
    "support": [
        "Phone support for the {p} is open from {n} am to {m} pm, Central European Time.",
        "Business customers of the {p} get a named engineer based in {c}.",
        "Support tickets about the {p} are answered within {n} hours on weekdays.",
    ],
}
QUESTIONS: dict[str, list[str]] = {
    "warranty": ["How long is the warranty on the {p}?", "Is water damage on my {p} covered?"],
    "pricing": ["How much does the {p} cost?", "Are there discounts if we buy many {p} units?"],
    "shipping": ["When will my {p} order be shipped?", "Can I get the {p} delivered faster?"],
    "setup": ["How do I pair the {p}?", "Which firmware does the {p} need?"],
    "troubleshooting": ["My {p} will not turn on, what should I do?", "What does the red light on the {p} mean?"],
    "security": ["Is data on the {p} encrypted?", "When are security patches for the {p} released?"],
    "returns": ["Can I send back a {p} I did not use?", "Is there a fee for returning an opened {p}?"],
    "support": ["What are the support hours for the {p}?", "How fast are {p} support tickets answered?"],
}


def product(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.randint(1, 9)}"


def fill(template: str, rng: random.Random, p: str) -> str:
    return template.format(
        p=p,
        c=rng.choice(CITIES),
        n=rng.randint(1, 9),
        m=rng.randint(10, 60),
        price=rng.randint(49, 899),
        price2=rng.randint(900, 1999),
    )


def chunks(count: int, seed: int = 1) -> list[str]:
    """Knowledge-base chunks of ~500 characters: a heading and sentences on one product and topic."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        p, topic = product(rng), rng.choice(list(TOPICS))
        other = rng.choice(list(TOPICS))
        sentences = [fill(t, rng, p) for t in TOPICS[topic]] + [fill(rng.choice(TOPICS[other]), rng, p)]
        texts.append(f"{p}: {topic}\n" + " ".join(sentences))
    return texts


def questions(count: int, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    return [fill(rng.choice(QUESTIONS[rng.choice(list(QUESTIONS))]), rng, product(rng)) for _ in range(count)]


def grow(vectors: np.ndarray, size: int, seed: int = 3) -> np.ndarray:
    """`size` vectors: the real ones, then noisy copies of them (cosine ~COPY_COSINE to their original)."""
    if size <= len(vectors):
        return vectors[:size]
    rng = np.random.default_rng(seed)
    dim = vectors.shape[1]
    sigma = np.sqrt((1 / COPY_COSINE**2 - 1) / dim)
    sources = rng.integers(0, len(vectors), size - len(vectors))
    copies = vectors[sources] + rng.normal(0, sigma, (len(sources), dim)).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    return np.concatenate([vectors, copies.astype(np.float32)])


# Measurements


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def store_corpus(service: RetrievalService, texts: list[str], vectors: np.ndarray) -> float:
    """Stored as the service stores uploads (documents of DOCUMENT_CHUNKS chunks), without embedding again."""
    started = time.perf_counter()
    for begin in range(0, len(vectors), DOCUMENT_CHUNKS):
        part = vectors[begin : begin + DOCUMENT_CHUNKS]
        pieces = [
            Piece(i, 0, len(texts[(begin + i) % len(texts)]), texts[(begin + i) % len(texts)], None, {})
            for i in range(len(part))
        ]
        document = ParsedDocument(f"kb-{begin // DOCUMENT_CHUNKS}.md", "markdown", f"{begin:064x}", 0, {}, pieces)
        service.store.add(TENANT, [document], [part], service.embedder.name)
    return time.perf_counter() - started


def index_builds(vectors: np.ndarray, hnsw: HnswParams) -> tuple[dict[str, Any], TenantIndex, TenantIndex]:
    """Exact and HNSW indexes built straight from vectors, on one OpenMP thread (the service's default)."""
    faiss.omp_set_num_threads(1)
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    flat = TenantIndex.empty("flat", vectors.shape[1], hnsw)
    started = time.perf_counter()
    flat.add(ids, vectors)
    flat_s = time.perf_counter() - started
    graph = TenantIndex.empty("hnsw", vectors.shape[1], hnsw)
    started = time.perf_counter()
    graph.add(ids, vectors)
    hnsw_s = time.perf_counter() - started
    return {"flat_build_s": round(flat_s, 3), "hnsw_build_s": round(hnsw_s, 3), "omp_threads": 1}, flat, graph


def recall_sweep(flat: TenantIndex, graph: TenantIndex, queries: np.ndarray, efs: list[int]) -> dict[str, Any]:
    """recall@10 of HNSW against exact search, and single-query search latency, for each efSearch."""
    exact = [{i for i, _ in flat.search(q, 10)} for q in queries]
    flat_times = []
    for q in queries:
        started = time.perf_counter()
        flat.search(q, 10)
        flat_times.append(time.perf_counter() - started)
    sweep = []
    inner = faiss.downcast_index(graph._index.index)  # the bench tunes efSearch in place
    for ef in efs:
        inner.hnsw.efSearch = ef
        hits, times = 0, []
        for q, truth in zip(queries, exact, strict=True):
            started = time.perf_counter()
            found = graph.search(q, 10)
            times.append(time.perf_counter() - started)
            hits += len({i for i, _ in found} & truth)
        sweep.append({"ef_search": ef, "recall_at_10": round(hits / (10 * len(queries)), 4), **percentiles(times)})
    passing = [row["ef_search"] for row in sweep if row["recall_at_10"] >= RECALL_TARGET]
    return {"flat_search": percentiles(flat_times), "hnsw": sweep, "min_ef_for_target": min(passing, default=None)}


async def latency(service: RetrievalService, texts: list[str], top_k: int, concurrency: int) -> dict[str, Any]:
    """`service.retrieve` as the gateway calls it; alone, the split into embed and search + read-back."""
    for text in texts[:10]:  # warm-up: model, index, database connections
        await service.retrieve(TENANT, text, top_k)
    total, embed, search = [], [], []
    loop = asyncio.get_running_loop()
    for text in texts:
        started = time.perf_counter()
        await service.retrieve(TENANT, text, top_k)
        total.append(time.perf_counter() - started)
        started = time.perf_counter()
        vector = (await service.embedder.embed([text]))[0]
        embedded = time.perf_counter()
        await loop.run_in_executor(None, service.search_vector, TENANT, vector, top_k, None)
        embed.append(embedded - started)
        search.append(time.perf_counter() - embedded)

    concurrent: list[float] = []

    async def client(mine: list[str]) -> None:
        for text in mine:
            started = time.perf_counter()
            await service.retrieve(TENANT, text, top_k)
            concurrent.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(texts[i::concurrency]) for i in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "retrieve": percentiles(total),
        "embed_query": percentiles(embed),
        "search_and_read_back": percentiles(search),
        f"retrieve_{concurrency}_concurrent": {**percentiles(concurrent), "queries_per_s": round(len(texts) / wall, 1)},
    }


def one_size(size: int, texts: list[str], vectors: np.ndarray, queries: list[str], query_vectors: np.ndarray,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    settings = RetrievalSettings(enabled=True, hnsw_threshold=args.threshold, sync_interval_s=2.0)
    hnsw = HnswParams(settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)
    data = grow(vectors, size)
    print(f"[{size}] building indexes from vectors ...", flush=True)
    builds, flat, graph = index_builds(data, hnsw)
    print(f"[{size}] recall sweep ...", flush=True)
    recall = recall_sweep(flat, graph, query_vectors, args.ef)
    del flat, graph
    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
        engine = make_engine(f"sqlite:///{tmp}/loraflow.db")
        migrate(engine)
        service = RetrievalService(settings, engine, Path(tmp) / "indexes")
        print(f"[{size}] storing {size} chunks ...", flush=True)
        store_s = store_corpus(service, texts, data)
        started = time.perf_counter()
        service.indexes.get(TENANT)  # first use: built from the stored vectors
        first_load_s = time.perf_counter() - started
        started = time.perf_counter()
        service.wait()
        save_s = time.perf_counter() - started
        kind = service.index_info(TENANT).kind
        print(f"[{size}] latency ({kind}) ...", flush=True)
        timings = asyncio.run(latency(service, queries, args.top_k, args.concurrency))
        service.close()
        restarted = RetrievalService(settings, engine, Path(tmp) / "indexes")
        started = time.perf_counter()
        restarted.indexes.get(TENANT)
        restart_s = time.perf_counter() - started
        restarted.close()
        file_mb = (Path(tmp) / "indexes" / TENANT / "index.faiss").stat().st_size / 2**20
        engine.dispose()
    return {
        "chunks": size,
        "real_chunks": min(size, len(vectors)),
        "noisy_copies": max(0, size - len(vectors)),
        "service_index_kind": kind,
        "ef_search_setting": settings.hnsw_ef_search,
        "latency": timings,
        "recall": recall,
        "build": {
            **builds,
            "store_in_database_s": round(store_s, 2),
            "first_load_from_database_s": round(first_load_s, 2),
            "save_s": round(save_s, 2),
            "restart_load_from_file_s": round(restart_s, 2),
            "index_file_mb": round(file_mb, 1),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = RetrievalSettings(enabled=True)
    embedder = shared_embedder(settings)
    embedder.load()
    texts = chunks(args.unique)
    # Embedding the corpus is the slow part on CPU and its result never changes: kept under var/ for later runs.
    cache = args.cache / f"retrieval-{settings.embedding_model}-{len(texts)}.npy"
    print(f"embedding {len(texts)} unique chunks (timed on the first {THROUGHPUT_SAMPLE}) ...", flush=True)
    started = time.perf_counter()
    sample = embedder.encode(texts[:THROUGHPUT_SAMPLE])
    throughput = len(sample) / (time.perf_counter() - started)
    if cache.exists():
        vectors = np.load(cache)
    else:
        vectors = np.concatenate([sample, embedder.encode(texts[THROUGHPUT_SAMPLE:])])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    asked = questions(args.queries)
    query_vectors = embedder.encode(asked)
    sizes = [one_size(size, texts, vectors, asked, query_vectors, args) for size in args.sizes]
    return {
        "benchmark": "retrieval",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
        },
        "setup": {
            "model": settings.embedding_model,
            "dim": embedder.dim,
            "device": settings.embedding_device,
            "unique_chunks_embedded": len(texts),
            "mean_chunk_chars": round(statistics.fmean(len(t) for t in texts)),
            "copies": f"sizes above {len(texts)} are filled with noisy copies of real vectors "
            f"(cosine ~{COPY_COSINE} to the original), texts reused",
            "queries": len(asked),
            "top_k": args.top_k,
            "hnsw_threshold": args.threshold,
            "hnsw": {"m": settings.hnsw_m, "ef_construction": settings.hnsw_ef_construction},
            "recall_target": RECALL_TARGET,
        },
        "embedding_throughput_chunks_per_s": round(throughput, 1),
        "sizes": sizes,
    }


def markdown(results: dict[str, Any]) -> str:
    setup = results["setup"]
    lines = [
        "# Retrieval benchmark",
        "",
        f"{results['when']} · {results['machine']['cpus']} CPUs (load {results['machine']['load_average_1m']} "
        f"at the end) · {setup['model']} on {setup['device']} · {setup['queries']} questions, top_k "
        f"{setup['top_k']} · HNSW M={setup['hnsw']['m']}, efConstruction={setup['hnsw']['ef_construction']}, "
        f"threshold {setup['hnsw_threshold']}",
        "",
        f"Embedding: {results['embedding_throughput_chunks_per_s']} chunks/s (timed on {THROUGHPUT_SAMPLE}; "
        f"{setup['unique_chunks_embedded']} unique chunks of ~{setup['mean_chunk_chars']} characters in all). "
        f"Larger sizes: {setup['copies']}.",
        "",
        "## Retrieval stage (`service.retrieve`: embed the question + search + read hits back)",
        "",
        "| chunks | index | retrieve p50 / p99 ms | embed p50 / p99 ms | search+read p50 / p99 ms "
        "| 8 concurrent p50 / p99 ms | queries/s at 8 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in results["sizes"]:
        t = size["latency"]
        conc = next(v for k, v in t.items() if k.endswith("_concurrent"))
        lines.append(
            f"| {size['chunks']:,} | {size['service_index_kind']} | {_pp(t['retrieve'])} | {_pp(t['embed_query'])} "
            f"| {_pp(t['search_and_read_back'])} | {_pp(conc)} | {conc['queries_per_s']} |"
        )
    lines += [
        "",
        "## HNSW recall@10 against exact search, and search latency (one query, FAISS only)",
        "",
        "| chunks | efSearch | recall@10 | search p50 / p99 ms | exact search p50 / p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size in results["sizes"]:
        for row in size["recall"]["hnsw"]:
            mark = " ✓" if row["ef_search"] == size["recall"]["min_ef_for_target"] else ""
            lines.append(
                f"| {size['chunks']:,} | {row['ef_search']}{mark} | {row['recall_at_10']:.3f} | {_pp(row)} "
                f"| {_pp(size['recall']['flat_search'])} |"
            )
    lines += [
        "",
        f"✓: the smallest efSearch with recall@10 >= {setup['recall_target']}. The service uses efSearch "
        f"{results['sizes'][0]['ef_search_setting']} (`LORAFLOW_RETRIEVAL__HNSW_EF_SEARCH`).",
        "",
        "## Build and load times (seconds)",
        "",
        "| chunks | exact build | HNSW build | store in DB | first load (build from DB) | save | restart (load file) "
        "| file MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in results["sizes"]:
        b = size["build"]
        lines.append(
            f"| {size['chunks']:,} | {b['flat_build_s']} | {b['hnsw_build_s']} | {b['store_in_database_s']} "
            f"| {b['first_load_from_database_s']} | {b['save_s']} | {b['restart_load_from_file_s']} "
            f"| {b['index_file_mb']} |"
        )
    lines += ["", "Builds run on one OpenMP thread (`index_threads`, the service's default).", ""]
    return "\n".join(lines)


def _pp(row: dict[str, float]) -> str:
    return f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--unique", type=int, default=10_000, help="chunks embedded for real")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threshold", type=int, default=RetrievalSettings().hnsw_threshold)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 48, 64, 96, 128, 256])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2k chunks, 1k unique, 40 queries")
    parser.add_argument("--out", type=Path, default=RESULTS / "retrieval.json")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench", help="where corpus vectors are kept")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.unique, args.queries = [2_000], 1_000, 40
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
