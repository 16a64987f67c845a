"""Gateway overhead against a fast fake engine: added latency, CPU per request, the highest rate one process holds.

    python -m bench.gateway_overhead [--requests 2000] [--stream-requests 300] [--levels 1,4,16,64]
        [--cases base,alias,pinned,grounded] [--workers 1,2,4] [--gateway-src DIR] [--profile DIR]

Processes: the fake engine (`bench/fake_upstream.py`) and this client pinned to one core (`--client-cores`, 0), the
gateway (`loraflow up --engine-url <fake>`, record on, SQLite) alone on the other (`--gateway-cores`, 1). Requests
through the gateway and straight to the fake engine are interleaved from one client: at concurrency c, c requests
are in flight, each worker alternating between the two, so both meet the same machine at each moment (about c/2 at
the gateway). Added latency = gateway percentile - direct percentile, per case: the base model, an alias
(`support`), a pinned version (`support@1`), and a grounded request (`"retrieval": {"top_k": 4}`, on a second
gateway started with `LORAFLOW_RETRIEVAL__ENABLED=true` and a tenant document), each non-streamed and streamed
(20 chunks and a usage chunk, one every `--token-interval-ms`).

CPU per request: the gateway process's user + system time over a phase (kernel accounting, its children included),
less its idle rate (health checks, registry poll) times the phase's length, over the requests it served.
Highest sustained rate: open-loop arrivals at rising rates (base model, non-streamed, gateway and direct alternating),
latency counted from each request's scheduled time; the highest rate whose added p99 stays under 5 ms.
Workers: `loraflow up --workers N` for each N, closed-loop load on the gateway alone (`--workers-cores`).

`--gateway-src DIR` runs the gateway's code from DIR (e.g. `git archive <commit> | tar -x -C DIR`): a before/after
from the same benchmark. Writes bench/results/gateway_overhead.{json,md} (`--name` to write elsewhere).
Targets (issue 15, record on): added p50 <= 0.5 ms, p99 <= 1.5 ms at concurrency 1-16; CPU <= 0.7 ms a
non-streamed request, <= 1.2 ms a 20-chunk stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uvloop

from bench import results_file
from bench.load_client import ConnectionLost, Pool, post
from bench.retrieval import chunks
from bench.stack_processes import BASE_NAME, Gateway, Upstream, synthetic_model

TENANT = "bench"
MESSAGES = [{"role": "user", "content": "Where is my parcel? It was due on Monday and the tracking page says nothing."}]
TARGETS = {"added_p50_ms": 0.5, "added_p99_ms": 1.5, "cpu_ms_plain": 0.7, "cpu_ms_stream": 1.2}
RATE_P99_LIMIT_S = 0.005
PYSPY_MODE = os.environ.get("BENCH_PYSPY_MODE", "--nonblocking").split()


@dataclass
class Case:
    name: str
    gateway: Gateway
    model: str  # what the client asks the gateway for
    engine_model: str  # the same thing as the engine knows it, for the direct requests
    upstream: Upstream
    key: str
    extra: dict[str, Any] = field(default_factory=dict)

    def requests(self, stream: bool) -> tuple[bytes, bytes]:
        """(through the gateway, straight to the engine) for this case and mode."""
        body: dict[str, Any] = {"model": self.model, "messages": MESSAGES, "max_tokens": 20, "temperature": 0}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        via = post("127.0.0.1", self.gateway.port, "/v1/chat/completions", body | self.extra,
                   {"authorization": f"Bearer {self.key}"})  # fmt: skip
        direct = post("127.0.0.1", self.upstream.port, "/v1/chat/completions", body | {"model": self.engine_model})
        return via, direct


def good(reply: Any, stream: bool) -> bool:
    if reply.status != 200:
        return False
    if stream:
        return reply.tail.endswith(b"data: [DONE]\n\n") and b'"error"' not in reply.tail
    return reply.tail.endswith(b"}")


class Own:
    """This client's own CPU time, to show it is not the bottleneck."""

    def __init__(self) -> None:
        self._ps = psutil.Process()

    def cpu_seconds(self) -> float:
        times = self._ps.cpu_times()
        return times.user + times.system


async def closed_loop(
    pools: tuple[Pool, Pool], requests: tuple[bytes, bytes], stream: bool, concurrency: int, per_target: int
) -> dict[str, Any]:
    """`concurrency` workers, each alternating gateway and direct requests, `per_target` of each in all."""
    latency: tuple[list[float], list[float]] = ([], [])
    first: tuple[list[float], list[float]] = ([], [])
    errors = [0, 0]
    remaining = [per_target, per_target]

    async def worker(start: int) -> None:
        which = start
        while remaining[0] > 0 or remaining[1] > 0:
            if remaining[which] <= 0:
                which = 1 - which
            remaining[which] -= 1
            sent = time.perf_counter()
            try:
                reply = await pools[which].send(requests[which])
            except ConnectionLost:
                errors[which] += 1
            else:
                if good(reply, stream):
                    latency[which].append(reply.ended_at - sent)
                    first[which].append(reply.first_byte_at - sent)
                else:
                    errors[which] += 1
            which = 1 - which

    await asyncio.gather(*(worker(i % 2) for i in range(concurrency)))
    return {"latency": latency, "first": first, "errors": errors}


def summary(run: dict[str, Any], stream: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, name in ((0, "gateway"), (1, "direct")):
        out[name] = {
            "latency_s": results_file.percentiles(run["latency"][index]),
            "first_byte_s": results_file.percentiles(run["first"][index]) if stream else None,
            "requests": len(run["latency"][index]),
            "errors": run["errors"][index],
        }
    g, d = out["gateway"]["latency_s"], out["direct"]["latency_s"]
    out["added_ms"] = {p: (g[p] - d[p]) * 1000 for p in ("p50", "p90", "p99")} if g["p50"] and d["p50"] else None
    return out


async def measure_case(
    case: Case, upstream: Upstream, stream: bool, concurrency: int, count: int, idle_per_s: float, own: Own
) -> dict[str, Any]:
    via, direct = case.requests(stream)
    pools = (Pool("127.0.0.1", case.gateway.port), Pool("127.0.0.1", upstream.port))
    for pool in pools:
        await pool.warm(concurrency)
    await closed_loop(pools, (via, direct), stream, concurrency, max(20, min(count // 10, 200)))  # warm the path
    cpu = (case.gateway.cpu_seconds(), upstream.cpu_seconds(), own.cpu_seconds())
    started = time.perf_counter()
    run = await closed_loop(pools, (via, direct), stream, concurrency, count)
    wall = time.perf_counter() - started
    gateway_cpu = case.gateway.cpu_seconds() - cpu[0]
    upstream_cpu = upstream.cpu_seconds() - cpu[1]
    client_cpu = own.cpu_seconds() - cpu[2]
    for pool in pools:
        pool.close()
    out = summary(run, stream)
    served = out["gateway"]["requests"] + out["gateway"]["errors"]
    both = served + out["direct"]["requests"] + out["direct"]["errors"]
    out |= {
        "wall_s": wall,
        "gateway_cpu_s": gateway_cpu,
        "gateway_cpu_ms_per_request": (gateway_cpu - idle_per_s * wall) / served * 1000,
        "gateway_cpu_s_per_1000": (gateway_cpu - idle_per_s * wall) / served * 1000,
        "gateway_busy": gateway_cpu / wall,
        "upstream_cpu_us_per_request": upstream_cpu / both * 1e6,
        "client_cpu_us_per_request": client_cpu / both * 1e6,
        "client_core_busy": (upstream_cpu + client_cpu) / wall,
    }
    return out


async def open_loop(
    pools: tuple[Pool, Pool], requests: tuple[bytes, bytes], rate: float, seconds: float
) -> dict[str, Any]:
    """`rate` requests a second to each target, alternating; latency from each request's scheduled time."""
    latency: tuple[list[float], list[float]] = ([], [])
    errors = [0, 0]
    total = int(rate * seconds) * 2
    interval = 1 / (2 * rate)
    tasks = []

    async def one(which: int, due: float) -> None:
        try:
            reply = await pools[which].send(requests[which])
        except ConnectionLost:
            errors[which] += 1
            return
        if good(reply, False):
            latency[which].append(reply.ended_at - due)
        else:
            errors[which] += 1

    start = time.perf_counter()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due_count = min(total, int((now - start) / interval) + 1)
        while sent < due_count:
            tasks.append(asyncio.create_task(one(sent % 2, start + sent * interval)))
            sent += 1
        await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
    lateness = time.perf_counter() - (start + (total - 1) * interval)
    await asyncio.gather(*tasks)
    return {"latency": latency, "first": ([], []), "errors": errors, "sender_lateness_s": lateness}


async def max_rate(case: Case, upstream: Upstream, rates: list[float], seconds: float, own: Own) -> dict[str, Any]:
    via, direct = case.requests(False)
    pools = (Pool("127.0.0.1", case.gateway.port), Pool("127.0.0.1", upstream.port))
    for pool in pools:
        await pool.warm(64)
    steps = []
    best = None
    for rate in rates:
        await open_loop(pools, (via, direct), rate, min(1.0, seconds / 3))  # settle at the rate
        cpu = (case.gateway.cpu_seconds(), own.cpu_seconds() + upstream.cpu_seconds())
        started = time.perf_counter()
        run = await open_loop(pools, (via, direct), rate, seconds)
        wall = time.perf_counter() - started
        step = summary(run, False) | {
            "rate": rate,
            "gateway_busy": (case.gateway.cpu_seconds() - cpu[0]) / wall,
            "client_core_busy": (own.cpu_seconds() + upstream.cpu_seconds() - cpu[1]) / wall,
            "sender_lateness_s": run["sender_lateness_s"],
        }
        steps.append(step)
        added = step["added_ms"]
        ok = added is not None and added["p99"] < RATE_P99_LIMIT_S * 1000 and not any(run["errors"])
        print(f"  rate {rate:.0f}/s: added p50 {added and added['p50']:.2f} ms, p99 {added and added['p99']:.2f} ms, "
              f"gateway busy {step['gateway_busy']:.2f}, client core busy {step['client_core_busy']:.2f}"
              f"{'' if ok else '  (over)'}", flush=True)  # fmt: skip
        if not ok:
            break
        best = rate
    for pool in pools:
        pool.close()
    return {"highest_rate_p99_added_under_5ms": best, "steps": steps}


async def workers_throughput(gateway: Gateway, case: Case, concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load on the gateway alone: requests a second, CPU per request of all its processes."""
    via, _ = case.requests(False)
    pool = Pool("127.0.0.1", gateway.port)
    await pool.warm(concurrency)
    latency: list[float] = []
    errors = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                reply = await pool.send(via)
            except ConnectionLost:
                errors += 1
                continue
            if good(reply, False):
                latency.append(reply.ended_at - sent)
            else:
                errors += 1

    deadline = time.perf_counter() + min(2.0, seconds / 2)  # warm every worker process
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    latency.clear()
    cpu = gateway.cpu_seconds()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    pool.close()
    return {
        "requests_per_s": len(latency) / wall,
        "latency_s": results_file.percentiles(latency),
        "errors": errors,
        "gateway_cpu_ms_per_request": (gateway.cpu_seconds() - cpu) / max(1, len(latency)) * 1000,
        "gateway_cores_busy": (gateway.cpu_seconds() - cpu) / wall,
    }


def setup_tenant(gateway: Gateway, adapter: Path) -> str:
    gateway.admin("POST", "/tenants", json={"id": TENANT})
    key = gateway.admin("POST", f"/tenants/{TENANT}/keys", json={}).json()["key"]
    number = gateway.admin("POST", f"/tenants/{TENANT}/adapters/support/versions", json={"path": str(adapter)}).json()
    gateway.admin("POST", f"/tenants/{TENANT}/adapters/support/promote", json={"version": number["version"]})
    return key


def upload_documents(gateway: Gateway, count: int) -> None:
    lines = "\n".join(json.dumps({"text": text}) for text in chunks(count)) + "\n"
    gateway.admin(
        "POST", f"/tenants/{TENANT}/documents", files=[("file", ("kb.jsonl", lines.encode(), "application/jsonl"))]
    )


def profile(gateway: Gateway, path: Path) -> subprocess.Popen:
    """py-spy sampling the gateway (and its workers) without pausing it, until interrupted; collapsed stacks for
    `python -m bench.profile_report`."""
    pyspy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(pyspy), "record", "--pid", str(gateway.pid), "--subprocesses", *PYSPY_MODE, "--rate", "1000",
         "--format", "raw", "--output", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model, adapter = synthetic_model(work)
    own = Own()
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    source = Path(args.gateway_src).resolve() if args.gateway_src else None  # noqa: ASYNC240 (before any load)
    upstream = Upstream(work, args.client_cores, args.token_interval_ms, 20)
    results: dict[str, Any] = {"cases": {}, "idle_cpu_per_s": {}}
    try:
        wanted = [name for name in args.cases.split(",") if name]
        plain_cases = [name for name in wanted if name != "grounded"]
        if plain_cases or args.rates:
            gateway = Gateway(upstream, work / "gateway", model, args.gateway_cores, source=source)
            key = setup_tenant(gateway, adapter)
            engine_name = upstream.engine_names()[0]
            cases = {
                "base": Case("base", gateway, BASE_NAME, BASE_NAME, upstream, key),
                "alias": Case("alias", gateway, "support", engine_name, upstream, key),
                "pinned": Case("pinned", gateway, "support@1", engine_name, upstream, key),
            }
            results["idle_cpu_per_s"]["gateway"] = idle = gateway.idle_cpu_per_s()
            for name in plain_cases:
                await measure_all(cases[name], upstream, args, idle, own, results, work)
            if args.rates:
                print("highest sustained rate (base model, non-streamed)", flush=True)
                rates = [float(r) for r in args.rates.split(",")]
                results["max_rate"] = await max_rate(cases["base"], upstream, rates, args.rate_seconds, own)
            gateway.stop()
        if "grounded" in wanted:
            grounded_gateway = Gateway(upstream, work / "gateway", model, args.gateway_cores, source=source,
                                       name="gateway-retrieval", LORAFLOW_RETRIEVAL__ENABLED="true")  # fmt: skip
            try:
                key = setup_key_only(grounded_gateway)
                upload_documents(grounded_gateway, args.documents)
                case = Case(
                    "grounded", grounded_gateway, BASE_NAME, BASE_NAME, upstream, key, {"retrieval": {"top_k": 4}}
                )
                results["idle_cpu_per_s"]["gateway-retrieval"] = idle = grounded_gateway.idle_cpu_per_s()
                await measure_all(case, upstream, args, idle, own, results, work, requests_cap=args.grounded_requests)
            finally:
                grounded_gateway.stop()
        if args.workers:
            results["workers"] = await measure_workers(args, upstream, model, adapter, source, work)
    finally:
        upstream.stop()
    return results


def setup_key_only(gateway: Gateway) -> str:
    """A key on a gateway whose database already holds the tenant (the grounded gateway reuses the first's var/)."""
    tenants = gateway.admin("GET", "/tenants").json()
    listed = tenants.get("data", tenants) if isinstance(tenants, dict) else tenants
    if not any((t.get("id") if isinstance(t, dict) else t) == TENANT for t in listed):
        gateway.admin("POST", "/tenants", json={"id": TENANT})
    return gateway.admin("POST", f"/tenants/{TENANT}/keys", json={}).json()["key"]


async def measure_all(
    case: Case, upstream: Upstream, args, idle: float, own: Own, results: dict, work: Path, requests_cap: int = 0
) -> None:
    for stream in (False, True):
        mode = "stream" if stream else "plain"
        for level in args.levels:
            count = args.stream_requests if stream else args.requests
            if requests_cap:
                count = min(count, requests_cap)
            spy = None
            if args.profile and level == args.profile_level:
                os.makedirs(args.profile, exist_ok=True)
                spy = profile(case.gateway, Path(args.profile) / f"{case.name}-{mode}-c{level}.txt")
                await asyncio.sleep(1.0)  # py-spy attached
            out = await measure_case(case, upstream, stream, level, count, idle, own)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            results["cases"].setdefault(case.name, {}).setdefault(mode, {})[str(level)] = out
            added = out["added_ms"] or {}
            print(
                f"{case.name:8} {mode:6} c={level:<3} added p50 {added.get('p50', float('nan')):6.2f} ms "
                f"p99 {added.get('p99', float('nan')):6.2f} ms | gateway CPU {out['gateway_cpu_ms_per_request']:.3f} "
                f"ms/req | client {out['client_cpu_us_per_request']:.0f} us/req, core 0 busy "
                f"{out['client_core_busy']:.2f} | errors {out['gateway']['errors']}/{out['direct']['errors']}",
                flush=True,
            )


async def measure_workers(args, upstream: Upstream, model: Path, adapter: Path, source, work: Path) -> dict:
    out: dict[str, Any] = {"cores": args.workers_cores, "concurrency": args.workers_concurrency}
    for n in [int(w) for w in args.workers.split(",")]:
        gateway = Gateway(upstream, work / "gateway", model, args.workers_cores, workers=n, source=source,
                          name=f"gateway-{n}w")  # fmt: skip
        try:
            key = setup_key_only(gateway)
            case = Case("base", gateway, BASE_NAME, BASE_NAME, upstream, key)
            out[str(n)] = await workers_throughput(gateway, case, args.workers_concurrency, args.workers_seconds)
        finally:
            gateway.stop()
        print(f"workers={n}: {out[str(n)]['requests_per_s']:.0f} req/s, p99 "
              f"{out[str(n)]['latency_s']['p99'] * 1000:.1f} ms, {out[str(n)]['gateway_cores_busy']:.2f} cores busy",
              flush=True)  # fmt: skip
    return out


def markdown(data: dict[str, Any]) -> str:
    text = "# Gateway overhead (fake engine, record on, SQLite)\n\n"
    text += f"{json.dumps(data['machine'])}\n\n`{data['command']}`\n\n"
    text += f"Placement: {data['placement']}. Gateway idle CPU: {data['results']['idle_cpu_per_s']} s/s.\n\n"
    rows = []
    for case, modes in data["results"]["cases"].items():
        for mode, levels in modes.items():
            for level, r in levels.items():
                g, d, a = r["gateway"]["latency_s"], r["direct"]["latency_s"], r["added_ms"] or {}
                rows.append([case, mode, level, r["gateway"]["requests"], d["p50"] * 1000, d["p99"] * 1000,
                             g["p50"] * 1000, g["p99"] * 1000, a.get("p50"), a.get("p99"),
                             r["gateway_cpu_ms_per_request"], r["client_cpu_us_per_request"],
                             r["gateway"]["errors"] + r["direct"]["errors"]])  # fmt: skip
    text += results_file.table(
        ["case", "mode", "c", "n", "direct p50 ms", "direct p99 ms", "gateway p50 ms", "gateway p99 ms",
         "added p50 ms", "added p99 ms", "gateway CPU ms/req", "client+upstream us/req", "errors"], rows,
    )  # fmt: skip
    if "max_rate" in data["results"]:
        m = data["results"]["max_rate"]
        text += f"\n## Highest sustained rate, added p99 < 5 ms: **{m['highest_rate_p99_added_under_5ms']} req/s**\n\n"
        text += results_file.table(
            ["rate/s", "added p50 ms", "added p99 ms", "gateway busy", "client core busy"],
            [[s["rate"], (s["added_ms"] or {}).get("p50"), (s["added_ms"] or {}).get("p99"), s["gateway_busy"],
              s["client_core_busy"]] for s in m["steps"]],
        )  # fmt: skip
    if "workers" in data["results"]:
        w = data["results"]["workers"]
        text += f"\n## Workers (gateway on cores {w['cores']}, closed loop, concurrency {w['concurrency']})\n\n"
        text += results_file.table(
            ["workers", "req/s", "p50 ms", "p99 ms", "gateway CPU ms/req", "cores busy", "errors"],
            [[n, r["requests_per_s"], r["latency_s"]["p50"] * 1000, r["latency_s"]["p99"] * 1000,
              r["gateway_cpu_ms_per_request"], r["gateway_cores_busy"], r["errors"]]
             for n, r in w.items() if isinstance(r, dict)],
        )  # fmt: skip
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="non-streamed, per target, case and level")
    parser.add_argument("--stream-requests", type=int, default=300, help="streamed, per target, case and level")
    parser.add_argument("--grounded-requests", type=int, default=300, help="cap for the grounded case")
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--cases", default="base,alias,pinned,grounded")
    parser.add_argument("--rates", default="100,200,300,400,600,800,1000,1250,1500,2000,2500,3000",
                        help="open-loop rates to each target for the highest sustained rate; empty: skip")  # fmt: skip
    parser.add_argument("--rate-seconds", type=float, default=4.0)
    parser.add_argument("--token-interval-ms", type=float, default=2.0)
    parser.add_argument("--documents", type=int, default=200, help="chunks in the grounded tenant's knowledge base")
    parser.add_argument("--gateway-cores", default="1")
    parser.add_argument("--client-cores", default="0", help="this client and the fake engine")
    parser.add_argument("--workers", default="", help="e.g. 1,2,4: also measure `loraflow up --workers N`")
    parser.add_argument("--workers-cores", default="0,1", help="where the workers run (taskset -c)")
    parser.add_argument("--workers-concurrency", type=int, default=64)
    parser.add_argument("--workers-seconds", type=float, default=8.0)
    parser.add_argument("--gateway-src", default="", help="run the gateway from this checkout (before/after)")
    parser.add_argument("--profile", default="", help="py-spy the gateway at --profile-level into this folder")
    parser.add_argument("--profile-level", type=int, default=16)
    parser.add_argument("--name", default="gateway_overhead", help="results file name")
    args = parser.parse_args()
    args.levels = [int(level) for level in args.levels.split(",")]
    machine = results_file.machine()
    with tempfile.TemporaryDirectory(prefix="loraflow-overhead-") as tmp:
        results = uvloop.run(run(args, Path(tmp)))
    data = {
        "machine": machine,
        "load_avg_at_end": os.getloadavg(),
        "command": "python -m bench.gateway_overhead " + " ".join(sys.argv[1:]),
        "placement": f"gateway on cores {args.gateway_cores}; fake engine and client on {args.client_cores}",
        "gateway_src": args.gateway_src or "this checkout",
        "token_interval_ms": args.token_interval_ms,
        "targets": TARGETS,
        "results": results,
    }
    text = markdown(data)
    json_path, _ = results_file.write(args.name, data, text)
    print(text)
    print(f"written to {json_path}")


if __name__ == "__main__":
    main()
