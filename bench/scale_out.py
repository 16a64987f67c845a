"""Scale-out: how fast a promotion on one gateway replica is served by the other, and what an engine restart under
steady load costs. Two gateway processes on one PostgreSQL database and a shared adapter directory, two engines.

    python -m bench.scale_out [--flips 10] [--load-s 30]

Targets (issue 6): promotion to served by the other replica under 2 s. Writes bench/results/scale_out.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bench import results_file
from tests.e2e.adapters import constant_examples, make_adapter
from tests.e2e.stack import HELLO, GatewayProcess, start_engine, steady_load, tiny_model, wait_for

POSTGRES_ADMIN = os.environ.get("LORAFLOW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def ask(gateway: GatewayProcess, key: str, timeout_s: float = 30) -> str:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "support", "messages": HELLO, "temperature": 0, "max_tokens": 8},
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout_s,
    )
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def propagation(first: GatewayProcess, second: GatewayProcess, key: str, flips: int) -> list[float]:
    """Alternate the production version on `first`; time until `second` answers with it."""
    times = []
    expected = {1: "ALPHA", 2: "BRAVO"}
    for flip in range(flips):
        version = 2 if flip % 2 == 0 else 1
        first.admin("POST", "/tenants/bench/adapters/support/promote", json={"version": version})
        flipped = time.monotonic()
        while ask(second, key) != expected[version]:
            time.sleep(0.01)
            assert time.monotonic() - flipped < 60, "the other replica never served the promotion"
        times.append(time.monotonic() - flipped)
        print(f"flip {flip + 1}/{flips}: served by the other replica after {times[-1]:.2f} s", flush=True)
        time.sleep(0.5)
    return times


async def restart_under_load(gateways, key, engine_process, engine_url, load_s: float) -> dict:
    requests: list[tuple[float, bool]] = []
    events: dict[str, float] = {}
    stop = asyncio.Event()

    def seen_up() -> bool:
        engines = [httpx.get(f"{g.url}/ready").json()["engines"] for g in gateways]
        return all(next(e["up"] for e in listed if e["url"] == engine_url) for listed in engines)

    def holds_adapters() -> bool:
        return any(m.get("parent") for m in httpx.get(f"{engine_url}/v1/models", timeout=2).json()["data"])

    async def chaos() -> None:
        await asyncio.sleep(load_s / 4)
        print("killing engine 2 under load", flush=True)
        events["killed"] = time.monotonic()
        os.killpg(engine_process.process.pid, signal.SIGKILL)
        await asyncio.to_thread(poll, lambda: not seen_up())
        events["noticed"] = time.monotonic()
        engine_process.start()
        events["restarted"] = time.monotonic()
        await asyncio.to_thread(wait_for, f"{engine_url}/health", 600)
        events["engine_healthy"] = time.monotonic()
        await asyncio.to_thread(poll, holds_adapters)
        events["adapters_loaded"] = time.monotonic()
        await asyncio.to_thread(poll, seen_up)
        events["back_in_rotation"] = time.monotonic()
        await asyncio.sleep(load_s / 4)
        stop.set()

    await asyncio.gather(*(steady_load(g, key, stop, requests) for g in gateways for _ in range(2)), chaos())
    failed = [started for started, ok in requests if not ok]
    return {
        "requests": len(requests),
        "failed": len(failed),
        "failed_after_noticed": sum(1 for started in failed if started > events["noticed"]),
        "seconds_to_notice": events["noticed"] - events["killed"],
        "seconds_restart_to_healthy": events["engine_healthy"] - events["restarted"],
        "seconds_healthy_to_adapters_loaded": events["adapters_loaded"] - events["engine_healthy"],
        "seconds_healthy_to_back_in_rotation": events["back_in_rotation"] - events["engine_healthy"],
    }


def _answers(gateway: GatewayProcess, key: str) -> bool:
    try:
        return bool(ask(gateway, key))
    except httpx.HTTPStatusError:
        return False


def poll(condition, interval_s: float = 0.05, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{condition} still false after {timeout_s:.0f} s")
        time.sleep(interval_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flips", type=int, default=10)
    parser.add_argument("--load-s", type=float, default=30)
    args = parser.parse_args()

    model = tiny_model()
    cache = model.parent.parent / "adapters"
    adapters = {word: make_adapter(model, cache, word.lower(), constant_examples(word)) for word in ("ALPHA", "BRAVO")}
    database = f"lf_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    with tempfile.TemporaryDirectory(prefix="loraflow-bench-") as tmp:
        work = Path(tmp)
        engines = [start_engine(model, work / f"engine-{core}", threads_bind=str(core)) for core in (0, 1)]
        urls = [url for _, url in engines]
        shared = {
            "LORAFLOW_DATABASE_URL": POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{database}",
            "LORAFLOW_VAR_DIR": str(work / "shared-var"),  # the shared volume of a real deployment
        }
        gateways = []
        try:
            print(f"engines up: {urls}", flush=True)
            gateways = [GatewayProcess(urls, work / name, model, **shared) for name in ("g1", "g2")]
            first, second = gateways
            key = first.tenant_key("bench")
            first.adapter("bench", "support", adapters["ALPHA"])
            first.admin("POST", "/tenants/bench/adapters/support/versions", json={"path": str(adapters["BRAVO"])})
            poll(lambda: _answers(second, key))  # the other replica has seen the alias (its next registry poll)
            times = propagation(first, second, key, args.flips)
            restart = asyncio.run(restart_under_load(gateways, key, engines[1][0], urls[1], args.load_s))
        finally:
            for gateway in gateways:
                gateway.stop()
            for process, _ in engines:
                process.stop()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))

    data = {
        "machine": results_file.machine(),
        "registry_poll_s": 1.0,
        "promotion_to_served_by_other_replica_s": {
            **results_file.percentiles(times),
            "max": max(times),
            "n": len(times),
        },
        "engine_restart_under_load": restart,
        "targets": {"promotion_to_other_replica_s": 2.0},
    }
    p = data["promotion_to_served_by_other_replica_s"]
    text_md = "# Scale-out\n\n" + results_file.table(
        ["promotion → other replica serves it", "p50 s", "p90 s", "max s", "n"],
        [["", p["p50"], p["p90"], p["max"], p["n"]]],
    )
    restart_rows = [[name, value] for name, value in restart.items()]
    text_md += "\n" + results_file.table(["engine restart under steady load", "value"], restart_rows)
    json_path, _ = results_file.write("scale_out", data, text_md)
    print(text_md)
    print(f"written to {json_path}")


if __name__ == "__main__":
    main()
