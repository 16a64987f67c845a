"""What the short way to the completion routes saves: the same handler, reached two ways, in one run.

    python -m bench.completion_route [--requests 20000]

- `dispatch`: as the gateway serves `/v1/chat/completions` — `CompletionDispatch` (gateway/openai/dispatch.py) calls
  the route function, which reaches the state through `gateway_of(request)` and checks the key itself.
- `fastapi`: the same handler as an ordinary FastAPI route taking `caller: CallerDep` (gateway/deps.py), so through
  FastAPI's routing, its dependency solving and the app's middleware, as every other route is served.

Both run in this process on the gateway's own middleware, exception handlers, key verifier (a cached key, as on the
hot path) and dependencies, with ASGI calls and no network, alternating request by request, so the difference is
the routing and dependency machinery alone. Writes bench/results/completion_route.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy.orm import sessionmaker
from starlette.responses import Response

from bench import results_file
from gateway import keys
from gateway.auth import Caller, KeyVerifier
from gateway.deps import CallerDep, gateway_of
from gateway.errors import install_handlers
from gateway.metrics import HTTPMetricsMiddleware, Metrics
from gateway.openai.dispatch import CompletionDispatch

KEY = "lf_sk_bench"
BODY = b'{"model":"support","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
REPLY = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'


async def handle(request: Request, caller: Caller) -> Response:
    """What both routes do once they have the caller: read the body, answer."""
    await request.body()
    return Response(REPLY, media_type="application/json")


async def dispatched(request: Request) -> Response:
    gateway = gateway_of(request)
    caller = await gateway.keys.verify(request.headers.get("authorization"))
    return await handle(request, caller)


def build_app() -> FastAPI:
    metrics = Metrics()
    verifier = KeyVerifier(sessionmaker(), ttl_s=3600)  # the key is cached below: it never queries
    verifier._cache[keys.hash_key(KEY)] = Caller(tenant_id="bench", key_id="key_1")
    app = FastAPI()
    app.state.gateway = SimpleNamespace(keys=verifier)
    install_handlers(app)

    @app.post("/fastapi/chat/completions")
    async def through_fastapi(request: Request, caller: CallerDep) -> Response:
        return await handle(request, caller)

    app.add_middleware(HTTPMetricsMiddleware, metrics=metrics)
    app.add_middleware(CompletionDispatch, routes={"/v1/chat/completions": dispatched}, metrics=metrics)
    return app


async def call(app: FastAPI, path: str) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (b"authorization", f"Bearer {KEY}".encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(requests: int) -> dict[str, list[float]]:
    app = build_app()
    async with app.router.lifespan_context(app):
        paths = {"dispatch": "/v1/chat/completions", "fastapi": "/fastapi/chat/completions"}
        for path in paths.values():  # warm up, and check both answer
            for _ in range(200):
                assert await call(app, path) == 200, path
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(requests):
            for name, path in paths.items():
                began = time.perf_counter_ns()
                await call(app, path)
                times[name].append((time.perf_counter_ns() - began) / 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests each way (default 20000)")
    args = parser.parse_args()
    times = asyncio.run(measure(args.requests))
    stats = {name: results_file.percentiles(values) for name, values in times.items()}
    fast, slow = stats["dispatch"], stats["fastapi"]
    ratio = {key: float(slow[key] or 0) / float(fast[key] or 1) for key in ("p50", "p99", "mean")}
    rows = [[name, s["p50"], s["p90"], s["p99"], s["mean"]] for name, s in stats.items()]
    rows.append(["fastapi / dispatch", ratio["p50"], None, ratio["p99"], ratio["mean"]])
    markdown = (
        "# The completion route: dispatch vs FastAPI routing and dependencies\n\n"
        f"{args.requests} requests each way, alternating, in one process (µs a request, CPU-bound: no network).\n\n"
        + results_file.table(["way", "p50 µs", "p90 µs", "p99 µs", "mean µs"], rows)
    )
    data = {"machine": results_file.machine(), "requests": args.requests, "stats": stats, "ratio": ratio}
    json_path, md_path = results_file.write("completion_route", data, markdown)
    print(markdown)
    print(f"written: {json_path} {md_path}")


if __name__ == "__main__":
    main()
