"""Time to first token with retrieval vs without, on the same requests, in one run, through a real gateway.

    python -m bench.retrieval_ttft [--requests 100] [--chunks 300] [--levels 1,4] [--top-k 4] [--max-tokens 8]

One vLLM engine (the tiny model), one `loraflow up --engine-url` gateway process with retrieval on
(`LORAFLOW_RETRIEVAL__ENABLED=true`), one tenant whose knowledge base is bench/retrieval.py's synthetic corpus
(uploaded through the admin API, so it is embedded and indexed as in production). Every question is asked twice,
streamed: grounded (`"retrieval": {"top_k": K}`) and plain. The two go back to back, in an order that alternates
from one question (or batch, at concurrency > 1) to the next, so a slow moment of a shared machine hits both.

Grounded TTFT = the retrieval stage (embed the question + search + read the hits back) + the engine's prefill
of a longer prompt (the context is ~K chunks of ~400 characters). Both are reported: the retrieval stage from each
grounded response's `Server-Timing` header, and the prompt tokens each way. Target (issue 5): grounded/plain
TTFT <= 1.15.
Writes bench/results/retrieval_ttft.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import results_file
from bench.retrieval import chunks, questions
from tests.e2e.stack import BASE_NAME, GatewayProcess, start_engine, tiny_model

TENANT = "bench"
TARGET = 1.15


@dataclass
class Samples:
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    retrieval: list[float] = field(default_factory=list)  # the gateway's retrieval stage (Server-Timing)
    after_retrieval: list[float] = field(default_factory=list)  # TTFT minus that: the engine on a longer prompt
    errors: list[str] = field(default_factory=list)


async def one(
    client: httpx.AsyncClient, question: str, grounded: bool, args: argparse.Namespace, into: Samples
) -> None:
    body = {"model": BASE_NAME, "messages": [{"role": "user", "content": question}], "stream": True,
            "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    if grounded:
        body["retrieval"] = {"top_k": args.top_k}
    started = time.perf_counter()
    first = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                into.errors.append(f"{response.status_code}: {response.text[:200]}")
                return
            if grounded and not response.headers.get("x-loraflow-sources"):
                into.errors.append("grounded, but no sources")
            stage = re.match(r"retrieval;dur=([\d.]+)", response.headers.get("server-timing", ""))
            async for line in response.aiter_lines():
                if first is None and _carries_text(line):
                    first = time.perf_counter()
                if '"usage":{' in line and '"choices":[]' in line:
                    into.prompt_tokens.append(json.loads(line[6:])["usage"]["prompt_tokens"])
    except httpx.HTTPError as exc:
        into.errors.append(repr(exc))
        return
    if first is not None:
        into.ttft.append(first - started)
        if stage:
            into.retrieval.append(float(stage.group(1)) / 1000)
            into.after_retrieval.append(first - started - into.retrieval[-1])
    into.latency.append(time.perf_counter() - started)


def _carries_text(line: str) -> bool:
    return line.startswith("data: {") and '"content":"' in line and '"content":""' not in line


async def level(client: httpx.AsyncClient, asked: list[str], concurrency: int, args: argparse.Namespace) -> dict:
    grounded, plain = Samples(), Samples()
    for round_, begin in enumerate(range(0, len(asked), concurrency)):
        batch = asked[begin : begin + concurrency]
        modes = [(True, grounded), (False, plain)]
        for is_grounded, samples in modes if round_ % 2 == 0 else modes[::-1]:
            await asyncio.gather(*(one(client, q, is_grounded, args, samples) for q in batch))
    out: dict = {}
    for name, s in (("grounded", grounded), ("plain", plain)):
        out[name] = {
            "ttft_s": results_file.percentiles(s.ttft),
            "latency_s": results_file.percentiles(s.latency),
            "prompt_tokens_mean": sum(s.prompt_tokens) / len(s.prompt_tokens) if s.prompt_tokens else None,
            "requests": len(s.ttft),
            "errors": len(s.errors),
            "first_errors": s.errors[:3],
        }
    out["grounded"]["retrieval_stage_s"] = results_file.percentiles(grounded.retrieval)
    out["grounded"]["ttft_after_retrieval_s"] = results_file.percentiles(grounded.after_retrieval)
    g, p = out["grounded"], out["plain"]
    out["ratio"] = {
        "ttft_p50": g["ttft_s"]["p50"] / p["ttft_s"]["p50"],
        "ttft_p99": g["ttft_s"]["p99"] / p["ttft_s"]["p99"],
        "latency_p50": g["latency_s"]["p50"] / p["latency_s"]["p50"],
        # Retrieval's own cost against sending the same long prompt with the context already in it.
        "ttft_p50_vs_same_prompt": g["ttft_s"]["p50"] / g["ttft_after_retrieval_s"]["p50"],
        "ttft_p99_vs_same_prompt": g["ttft_s"]["p99"] / g["ttft_after_retrieval_s"]["p99"],
    }
    return out


async def run(url: str, key: str, args: argparse.Namespace) -> dict:
    asked = questions(args.requests, seed=7)
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:
        warm = Samples()
        for question in questions(16, seed=99):  # model, index, connections, prefix cache of the instructions
            await one(client, question, True, args, warm)
            await one(client, question, False, args, warm)
        if warm.errors:
            raise RuntimeError(f"warm-up failed: {warm.errors[:3]}")
        return {str(c): await level(client, asked, c, args) for c in args.levels}


def upload_corpus(gateway: GatewayProcess, count: int) -> dict:
    """The knowledge base as one JSONL document, one chunk a line; returns the tenant's index."""
    lines = "\n".join(json.dumps({"text": text}) for text in chunks(count)) + "\n"
    files = [("file", ("kb.jsonl", lines.encode(), "application/jsonl"))]
    started = time.perf_counter()
    gateway.admin("POST", f"/tenants/{TENANT}/documents", files=files)  # embedded before it answers (120 s limit)
    index = gateway.admin("GET", f"/tenants/{TENANT}/index").json()
    return {**index, "upload_s": round(time.perf_counter() - started, 1)}


def markdown(data: dict) -> str:
    text = (f"# Time to first token, grounded vs plain\n\n{json.dumps(data['machine'])}\n\n"
            f"{data['setup']}\n\n")  # fmt: skip
    rows = []
    for concurrency, result in data["results"].items():
        for mode in ("grounded", "plain"):
            r = result[mode]
            rows.append([concurrency, mode, r["requests"], r["errors"], r["ttft_s"]["p50"] * 1000,
                         r["ttft_s"]["p99"] * 1000, r["latency_s"]["p50"] * 1000, r["prompt_tokens_mean"]])  # fmt: skip
    text += results_file.table(
        ["concurrency", "mode", "n", "errors", "TTFT p50 ms", "TTFT p99 ms", "latency p50 ms", "prompt tokens"], rows
    )
    text += f"\n## Grounded / plain (target TTFT <= {TARGET})\n\n"
    text += results_file.table(
        ["concurrency", "TTFT p50", "TTFT p99", "latency p50"],
        [[c, r["ratio"]["ttft_p50"], r["ratio"]["ttft_p99"], r["ratio"]["latency_p50"]]
         for c, r in data["results"].items()],
    )  # fmt: skip
    text += (
        "\n## Where a grounded request's time goes\n\nRetrieval stage: the gateway's own `Server-Timing` of each "
        "grounded response (embed the question, search, read the hits back). After retrieval: TTFT minus that, i.e. "
        "the engine on the longer prompt. The last two columns: grounded TTFT / TTFT after retrieval, the cost of "
        "retrieval itself against sending the same prompt with the context already in it.\n\n"
    )
    text += results_file.table(
        ["concurrency", "retrieval p50 ms", "retrieval p99 ms", "after retrieval p50 ms", "after retrieval p99 ms",
         "vs same prompt p50", "vs same prompt p99"],
        [[c, r["grounded"]["retrieval_stage_s"]["p50"] * 1000, r["grounded"]["retrieval_stage_s"]["p99"] * 1000,
          r["grounded"]["ttft_after_retrieval_s"]["p50"] * 1000, r["grounded"]["ttft_after_retrieval_s"]["p99"] * 1000,
          r["ratio"]["ttft_p50_vs_same_prompt"], r["ratio"]["ttft_p99_vs_same_prompt"]]
         for c, r in data["results"].items()],
    )  # fmt: skip
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100, help="questions per concurrency level (each asked twice)")
    parser.add_argument("--chunks", type=int, default=300, help="knowledge-base chunks (embedded at upload)")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument(
        "--embedding-threads", type=int, default=0, help="torch threads of the embedder; 0: the setting's default"
    )
    args = parser.parse_args()

    model = tiny_model()
    with tempfile.TemporaryDirectory(prefix="loraflow-bench-") as tmp:
        work = Path(tmp)
        engine, engine_url = start_engine(model, work)
        gateway = None
        try:
            env = {"LORAFLOW_RETRIEVAL__ENABLED": "true", "LORAFLOW_TRAINING__RUN_SCHEDULER": "false"}
            if args.embedding_threads:
                env["LORAFLOW_RETRIEVAL__EMBEDDING_THREADS"] = str(args.embedding_threads)
            gateway = GatewayProcess([engine_url], work / "gateway", model, **env)
            key = gateway.tenant_key(TENANT)
            index = upload_corpus(gateway, args.chunks)
            print(f"gateway {gateway.url}, engine {engine_url}; index {index}", flush=True)
            results = asyncio.run(run(gateway.url, key, args))
        finally:
            if gateway is not None:
                gateway.stop()
            engine.stop()
    setup = (f"{args.requests} questions per level, each asked grounded and plain (alternating order), streamed, "
             f"max_tokens={args.max_tokens}, top_k={args.top_k}; knowledge base of {index['chunks']} chunks "
             f"({index['kind']} index, uploaded and embedded in {index['upload_s']} s); tiny model on vLLM CPU; "
             "one gateway process (`loraflow up --engine-url`, retrieval on, record on, no scheduler), "
             f"embedder threads: {args.embedding_threads or 'the setting (default 1)'}.")  # fmt: skip
    data = {"machine": results_file.machine(), "setup": setup, "index": index, "results": results,
            "target_ttft_ratio": TARGET}  # fmt: skip
    text = markdown(data)
    json_path, _ = results_file.write("retrieval_ttft", data, text)
    print(text)
    print(f"written to {json_path}")


if __name__ == "__main__":
    main()
