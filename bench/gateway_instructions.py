"""Instructions the gateway executes a request, counted by callgrind: the same on a busy machine as on a quiet one.

    python -m bench.gateway_instructions [--requests 200] [--streams 40] [--gateway-src DIR]

Wall-clock and CPU-time figures move with whatever else the machine runs; an instruction count does not (to a few
tenths of a percent), so this is how each change to the gateway's hot path is judged, before and after, even while
other jobs share the cores. The gateway (`loraflow up --engine-url <fake engine>`, record on, SQLite) runs under
`valgrind --tool=callgrind` with instrumentation off until the load starts (so start-up is not slowed) and on for
exactly `--requests` non-streamed requests, then `--streams` streamed ones (20 chunks and usage) on the base model,
one at a time; every thread counts (the record's writer too). Background loops are slowed to once an hour so they
do not add to the count, and the record's writer batches rows for 2 s (under callgrind a request takes ~50 times
longer: with the 50 ms default each row would be a transaction of its own, as at a trickle of traffic, not as under
load). Writes bench/results/gateway_instructions.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from bench import results_file
from bench.gateway_overhead import Case, good, setup_tenant
from bench.load_client import Pool
from bench.stack_processes import BASE_NAME, Gateway, Upstream, synthetic_model

FLUSH_S = 2.0


def callgrind_control(pid: int, *options: str) -> str:
    return subprocess.run(["callgrind_control", *options, str(pid)], capture_output=True, text=True, check=True).stdout


def total_instructions(directory: Path) -> int:
    """The program totals of every dump callgrind wrote, as callgrind_annotate adds them up."""
    total = 0
    for path in directory.glob("callgrind.out.*"):
        text = subprocess.run(["callgrind_annotate", str(path)], capture_output=True, text=True, check=True).stdout
        match = re.search(r"^([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", text, re.MULTILINE)
        if match:
            total += int(match.group(1).replace(",", ""))
    return total


async def phase(gateway: Gateway, case: Case, stream: bool, count: int, dumps: Path, label: str) -> float:
    via, _ = case.requests(stream)
    pool = Pool("127.0.0.1", gateway.port)
    for _ in range(5):  # warm: this path's code is compiled and cached before it is counted
        reply = await pool.send(via)
        assert good(reply, stream), reply
    for old in dumps.glob("callgrind.out.*"):  # noqa: ASYNC240 (no load running)
        old.unlink()
    callgrind_control(gateway.pid, "--zero")
    callgrind_control(gateway.pid, "--instr=on")
    for _ in range(count):
        reply = await pool.send(via)
        assert good(reply, stream), reply
    await asyncio.sleep(FLUSH_S + 1.0)  # the record's writer takes the last rows
    callgrind_control(gateway.pid, "--instr=off")
    callgrind_control(gateway.pid, f"--dump={label}")
    await asyncio.sleep(1.0)
    pool.close()
    return total_instructions(dumps) / count


async def run(args: argparse.Namespace, work: Path) -> dict:
    model, adapter = synthetic_model(work)
    upstream = Upstream(work, "", args.token_interval_ms, 20)
    dumps = work / "callgrind"
    dumps.mkdir()
    os.environ["BENCH_GATEWAY_PYTHON_ARGS"] = ""
    source = Path(args.gateway_src).resolve() if args.gateway_src else None  # noqa: ASYNC240 (before any load)
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=no",
              f"--callgrind-out-file={dumps}/callgrind.out.%p"]  # fmt: skip
    quiet = {"LORAFLOW_REGISTRY_POLL_S": "3600", "LORAFLOW_ENGINE__HEALTH_INTERVAL_S": "3600",
             "LORAFLOW_RECORD__STATS_REFRESH_S": "3600", "LORAFLOW_RECORD__FLUSH_INTERVAL_S": str(FLUSH_S)}  # fmt: skip
    gateway = Gateway(upstream, work / "gateway", model, "", source=source, wrapper=prefix, **quiet)
    try:
        key = setup_tenant(gateway, adapter)
        case = Case("base", gateway, BASE_NAME, BASE_NAME, upstream, key)
        plain = await phase(gateway, case, False, args.requests, dumps, "plain")
        stream = await phase(gateway, case, True, args.streams, dumps, "stream")
    finally:
        gateway.stop()
        upstream.stop()
    return {"instructions_per_request": {"plain": plain, "stream": stream}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--token-interval-ms", type=float, default=2.0)
    parser.add_argument("--gateway-src", default="", help="run the gateway from this checkout (before/after)")
    parser.add_argument("--name", default="gateway_instructions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loraflow-instructions-") as tmp:
        results = uvloop.run(run(args, Path(tmp)))
    data = {"machine": results_file.machine(), "gateway_src": args.gateway_src or "this checkout", **results,
            "command": "python -m bench.gateway_instructions " + " ".join(sys.argv[1:])}  # fmt: skip
    per = results["instructions_per_request"]
    text = (
        "# Gateway instructions a request (callgrind, record on)\n\n"
        f"`{data['command']}` (gateway: {data['gateway_src']})\n\n"
        + results_file.table(["mode", "instructions a request"], [["plain", per["plain"]], ["stream", per["stream"]]])
    )
    results_file.write(args.name, data, text)
    print(text)


if __name__ == "__main__":
    main()
