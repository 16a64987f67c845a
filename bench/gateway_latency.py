"""Gateway overhead: requests straight to vLLM vs through the gateway (record off, record on), in one run.

    python -m bench.gateway_latency [--requests 240] [--levels 1,4,16] [--max-tokens 16] [--model smollm2-135m-instruct]

One engine, two gateway processes attached to it (one records, one does not), one HTTP client. Latency and time to
first token: requests to the three targets interleaved one by one, so all three meet the same engine at each moment.
Throughput: each target on its own, in batches that rotate (tokens/s: every request generates max_tokens, EOS
ignored). Writes bench/results/gateway_latency.{json,md}; with `--model smollm2-135m-instruct` (the default base model,
an adapter trained on it by our recipe) bench/results/gateway_latency_smollm2.{json,md}.
Targets (issue 2): gateway/direct p50 <= 1.02, p99 <= 1.05, TTFT p50 <= 1.03; record on/off p99 <= 1.01.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import results_file
from tests.e2e.adapters import constant_examples, make_adapter, smollm2_routing_adapter
from tests.e2e.stack import BASE_NAME, CACHE, GatewayProcess, smollm2_model, start_engine, tiny_model
from trainer.base_model import SMOLLM2

MESSAGES = [{"role": "user", "content": "hello, where is my parcel?"}]


@dataclass
class Target:
    name: str
    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Samples:
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    busy_s: float = 0.0  # time spent in the throughput batches
    throughput_requests: int = 0
    errors: int = 0


async def one(client: httpx.AsyncClient, target: Target, stream: bool, max_tokens: int, samples: Samples) -> None:
    body = {"model": target.model, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0,
            "stream": stream, "ignore_eos": True}  # fmt: skip
    started = time.perf_counter()
    try:
        if not stream:
            response = await client.post(f"{target.url}/v1/chat/completions", json=body, headers=target.headers)
            response.raise_for_status()
            response.json()
        else:
            first = None
            async with client.stream(
                "POST", f"{target.url}/v1/chat/completions", json=body, headers=target.headers
            ) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if (
                        first is None
                        and line.startswith("data: {")
                        and '"content":"' in line
                        and '"content":""' not in line
                    ):
                        first = time.perf_counter()
            if first is not None:
                samples.ttft.append(first - started)
    except httpx.HTTPError:
        samples.errors += 1
        return
    samples.latency.append(time.perf_counter() - started)


async def batch(client, target, stream, max_tokens, samples, concurrency: int, count: int) -> None:
    """`count` requests to one target, `concurrency` at a time: its throughput on its own."""
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            await one(client, target, stream, max_tokens, samples)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.busy_s += time.perf_counter() - started


async def interleaved(client, targets, stream, max_tokens, samples, concurrency: int, per_target: int) -> None:
    """Requests to every target in turn from one queue, `concurrency` at a time: at each moment all targets meet the
    same engine. A CPU engine goes through phases of seconds in which it answers 50 ms slower; targets measured one
    after another would each catch different phases, which is most of what a ratio would then show."""
    queue = [targets[i % len(targets)] for i in range(per_target * len(targets))]
    queue.reverse()

    async def worker() -> None:
        while queue:
            target = queue.pop()
            await one(client, target, stream, max_tokens, samples[(target.name, stream)])

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run(targets: list[Target], levels: list[int], requests: int, max_tokens: int, rounds: int = 3) -> dict:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    results: dict = {}
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for target in targets:  # warm every path (connections, prefix cache, adapter slots)
            await batch(client, target, False, max_tokens, Samples(), 4, 16)
            await batch(client, target, True, max_tokens, Samples(), 4, 16)
        for level in levels:
            samples = {(t.name, s): Samples() for t in targets for s in (False, True)}
            for stream in (False, True):  # latency and time to first token: interleaved
                await interleaved(client, targets, stream, max_tokens, samples, level, requests)
            for round_ in range(rounds):  # throughput: each target on its own, in turns
                order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
                for stream in (False, True):
                    for target in order:
                        alone = Samples()
                        await batch(client, target, stream, max_tokens, alone, level, max(level * 4, 16))
                        samples[(target.name, stream)].busy_s += alone.busy_s
                        samples[(target.name, stream)].errors += alone.errors
                        samples[(target.name, stream)].throughput_requests += len(alone.latency)
            for (name, stream), s in samples.items():
                results.setdefault(str(level), {})[f"{name}/{'stream' if stream else 'plain'}"] = {
                    "latency_s": results_file.percentiles(s.latency),
                    "ttft_s": results_file.percentiles(s.ttft) if stream else None,
                    "requests": len(s.latency),
                    "errors": s.errors,
                    "throughput_rps": s.throughput_requests / s.busy_s if s.busy_s else None,
                    "tokens_per_s": s.throughput_requests * max_tokens / s.busy_s if s.busy_s else None,
                }
    return results


def ratios(results: dict, numerator: str, denominator: str) -> dict:
    out = {}
    for level, by_target in results.items():
        for mode in ("plain", "stream"):
            top, bottom = by_target[f"{numerator}/{mode}"], by_target[f"{denominator}/{mode}"]
            entry = {
                "p50": top["latency_s"]["p50"] / bottom["latency_s"]["p50"],
                "p99": top["latency_s"]["p99"] / bottom["latency_s"]["p99"],
                "throughput": top["throughput_rps"] / bottom["throughput_rps"],
            }
            if mode == "stream":
                entry["ttft_p50"] = top["ttft_s"]["p50"] / bottom["ttft_s"]["p50"]
                entry["ttft_p99"] = top["ttft_s"]["p99"] / bottom["ttft_s"]["p99"]
            out[f"c={level}/{mode}"] = entry
    return out


def markdown(data: dict) -> str:
    rows = []
    for level, by_target in data["results"].items():
        for key, r in by_target.items():
            ttft = r["ttft_s"] or {}
            latency = r["latency_s"]
            ttft_ms = [ttft[p] * 1000 if ttft.get(p) else None for p in ("p50", "p99")]
            rows.append([level, key, r["requests"], r["errors"], latency["p50"] * 1000, latency["p99"] * 1000, *ttft_ms,
                         r["throughput_rps"], r.get("tokens_per_s")])  # fmt: skip
    text = f"# Gateway latency: {data.get('model', BASE_NAME)}\n\n{json.dumps(data['machine'])}\n\n"
    text += f"max_tokens={data['max_tokens']}, adapter: {data.get('adapter', 'ALPHA')}\n\n"
    text += results_file.table(
        ["concurrency", "target", "n", "errors", "p50 ms", "p99 ms", "TTFT p50 ms", "TTFT p99 ms", "req/s",
         "tokens/s"], rows,
    )  # fmt: skip
    for title, key in (("Gateway (record off) / direct", "gateway_vs_direct"),
                       ("Gateway (record on) / direct", "recorded_vs_direct"),
                       ("Record on / record off", "record_on_vs_off")):  # fmt: skip
        text += f"\n## {title}\n\n"
        text += results_file.table(
            ["case", "p50", "p99", "TTFT p50", "TTFT p99", "throughput"],
            [
                [case, r["p50"], r["p99"], r.get("ttft_p50"), r.get("ttft_p99"), r["throughput"]]
                for case, r in data[key].items()
            ],
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=240, help="per target, mode and concurrency level")
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default=BASE_NAME, choices=[BASE_NAME, SMOLLM2], help="the base model served")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="throughput batches per target and mode")
    parser.add_argument(
        "--engine-cores",
        default="0",
        help="VLLM_CPU_OMP_THREADS_BIND: the engine's compute threads stay off the "
        "cores the gateway and the client run on (vLLM's CPU threads spin while they wait)",
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    if args.model == SMOLLM2:
        model = smollm2_model()
        adapter = smollm2_routing_adapter(model, CACHE / "adapters")
    else:
        model = tiny_model()
        adapter = make_adapter(model, CACHE / "adapters", "alpha", constant_examples("ALPHA"))
    named = {"LORAFLOW_SERVED_MODEL_NAME": args.model}
    with tempfile.TemporaryDirectory(prefix="loraflow-bench-") as tmp:
        work = Path(tmp)
        engine, engine_url = start_engine(model, work, threads_bind=args.engine_cores, served_name=args.model)
        gateways: list[GatewayProcess] = []
        try:
            plain = GatewayProcess([engine_url], work / "record-off", model, LORAFLOW_RECORD__ENABLED="false", **named)
            gateways.append(plain)
            recorded = GatewayProcess([engine_url], work / "record-on", model, **named)
            gateways.append(recorded)
            targets = []
            for name, gateway in (("gateway", plain), ("gateway+record", recorded)):
                key = gateway.tenant_key("bench")
                gateway.adapter("bench", "support", adapter)
                targets.append(Target(name, gateway.url, "support", {"Authorization": f"Bearer {key}"}))
            engine_names = [m["id"] for m in httpx.get(f"{engine_url}/v1/models").json()["data"] if m.get("parent")]
            targets.insert(0, Target("direct", engine_url, engine_names[0]))
            print(f"engine {engine_url}; gateways {plain.url} (record off), {recorded.url} (record on)")
            results = asyncio.run(run(targets, levels, args.requests, args.max_tokens, args.throughput_rounds))
        finally:
            for gateway in gateways:
                gateway.stop()
            engine.stop()
    data = {
        "machine": results_file.machine(),
        "model": args.model,
        "adapter": adapter.name,
        "max_tokens": args.max_tokens,
        "engine_cores": args.engine_cores,
        "results": results,
        "gateway_vs_direct": ratios(results, "gateway", "direct"),
        "recorded_vs_direct": ratios(results, "gateway+record", "direct"),
        "record_on_vs_off": ratios(results, "gateway+record", "gateway"),
        "targets": {"gateway/direct p50": 1.02, "p99": 1.05, "TTFT p50": 1.03, "record on/off p99": 1.01},
    }
    text = markdown(data)
    name = "gateway_latency" if args.model == BASE_NAME else "gateway_latency_smollm2"
    json_path, _ = results_file.write(name, data, text)
    print(text)
    print(f"written to {json_path}")


if __name__ == "__main__":
    main()
