"""Past one machine, on loopback: two gateway processes on one PostgreSQL, two vLLM engines, adapters in S3."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from tests.e2e.stack import HELLO, GatewayProcess, start_engine, steady_load, wait_for

pytestmark = pytest.mark.e2e


def ask(gateway: GatewayProcess, key: str, model: str = "support") -> str:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": model, "messages": HELLO, "temperature": 0, "max_tokens": 5},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def engine_up_everywhere(gateways: list[GatewayProcess], engine_url: str) -> bool:
    """What each gateway's health check currently says of one engine."""
    states = []
    for gateway in gateways:
        engines = httpx.get(f"{gateway.url}/ready", timeout=5).json()["engines"]
        states.append(next(e["up"] for e in engines if e["url"] == engine_url))
    return all(states)


def test_two_gateways_two_engines_one_database(engine, tiny_model, adapter_dirs, postgres_url, s3, tmp_path):
    s3_url, s3_client, bucket = s3
    second_engine, second_url = start_engine(tiny_model, tmp_path / "engine-b", threads_bind="1")
    engines = [engine.url, second_url]
    shared = {
        "LORAFLOW_DATABASE_URL": postgres_url,
        "LORAFLOW_ADAPTERS__STORE": f"s3://{bucket}/loraflow",
        "LORAFLOW_ADAPTERS__S3_ENDPOINT_URL": s3_url,
        "LORAFLOW_REGISTRY_POLL_S": "0.5",
        "LORAFLOW_ENGINE__HEALTH_INTERVAL_S": "0.5",
        **{name: os.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
    }
    gateways = []
    try:
        gateways = [GatewayProcess(engines, tmp_path / name, tiny_model, **shared) for name in ("g1", "g2")]
        first, second = gateways
        key = first.tenant_key("scale")  # one database: the key works on both replicas
        first.adapter("scale", "support", adapter_dirs["alpha"])
        assert ask(first, key) == "ALPHA"
        wait_until(lambda: ask(second, key) == "ALPHA", 10)
        stored = {o["Key"].split("/")[-1] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
        assert {"adapter_config.json", "adapter_model.safetensors"} <= stored

        # A promotion on one replica is served by the other within seconds.
        number = first.admin(
            "POST", "/tenants/scale/adapters/support/versions", json={"path": str(adapter_dirs["bravo"])}
        )
        first.admin("POST", "/tenants/scale/adapters/support/promote", json={"version": number.json()["version"]})
        flipped = time.monotonic()
        wait_until(lambda: ask(second, key) == "BRAVO", 5)
        assert time.monotonic() - flipped < 5

        # One engine stops under steady load: once the health checks notice, no new request fails.
        outcomes = asyncio.run(load_while_engine_dies(gateways, key, second_engine, second_url))
        noticed = outcomes["noticed_at"]
        late_failures = [started for started, ok in outcomes["requests"] if not ok and started > noticed]
        assert late_failures == [], f"{len(late_failures)} requests failed after the engine was seen down"
        assert sum(ok for _, ok in outcomes["requests"]) > 20

        # It comes back: the gateways load every production adapter on it with no admin action.
        second_engine.start()
        wait_for(f"{second_url}/health", 300)
        wait_until(lambda: holds_everything_wanted(gateways, second_url), 30)
        assert loaded(second_url)
        assert ask(first, key) == ask(second, key) == "BRAVO"
    finally:
        for gateway in gateways:
            gateway.stop()
        second_engine.stop()


def holds_everything_wanted(gateways: list[GatewayProcess], engine_url: str) -> bool:
    """Every gateway sees the engine up and holding every production adapter (the engine is shared with other
    tests' gateways, so its own list of adapters says nothing about these ones)."""
    for gateway in gateways:
        engines = httpx.get(f"{gateway.url}/ready", timeout=5).json()["engines"]
        state = next(e for e in engines if e["url"] == engine_url)
        if not (state["up"] and state["adapters_missing"] == 0):
            return False
    return True


def loaded(engine_url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{engine_url}/v1/models", timeout=5).json()["data"] if m.get("parent")}


def wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


async def load_while_engine_dies(gateways, key, engine_process, engine_url) -> dict:
    requests: list[tuple[float, bool]] = []
    noticed_at = float("inf")
    stop = asyncio.Event()

    async def kill_then_watch() -> None:
        nonlocal noticed_at
        await asyncio.sleep(2)
        os.killpg(engine_process.process.pid, signal.SIGKILL)
        while True:
            up = await asyncio.to_thread(engine_up_everywhere, gateways, engine_url)
            if not up:
                noticed_at = time.monotonic()
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(4)  # steady load with one engine
        stop.set()

    await asyncio.gather(*(steady_load(g, key, stop, requests) for g in gateways for _ in range(2)), kill_then_watch())
    return {"requests": requests, "noticed_at": noticed_at}
