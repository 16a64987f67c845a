"""Prometheus metrics: requests, latency, time to first token, tokens, per-adapter-version counts, engine state.

Each app has its own registry (several apps can live in one test process); engine state is read at scrape time.
Under `loraflow up --workers N` (gateway/server.py) a scrape reaches one worker of several: counters and histograms
then live in prometheus_client's shared files (its multiprocess mode) and a scrape sums every worker's; what a worker
counts on its own at scrape time (the record's writer) is copied there every second; what every worker sees alike
(engines, the record's statistics, canaries) is read by the worker that answers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.engine.pool import EnginePool
    from gateway.openai.serving import Exchange

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # set: one of several workers
        self._read_at_scrape: list[Collector] = []
        self._mirrors: list[_Mirror] = []
        r = self.registry
        self.http_requests = Counter(
            "loraflow_http_requests_total", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.completions = Counter(
            "loraflow_completions_total",
            "Completions by endpoint and outcome.",
            ["endpoint", "stream", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "loraflow_completion_duration_seconds", "Completion latency, end to end.", ["endpoint", "stream"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "loraflow_time_to_first_token_seconds", "Time to the first generated token.", ["endpoint", "stream"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter("loraflow_tokens_total", "Tokens processed.", ["kind"], registry=r)
        self.adapter_requests = Counter(
            "loraflow_adapter_version_requests_total", "Completions per tenant and model version served.",
            ["tenant", "model"], registry=r,
        )  # fmt: skip
        # prometheus_client's labels() checks and converts the values and takes a lock on every call; the request
        # path asks for the same few children again and again, so it keeps them.
        self._http_requests = _children(self.http_requests)
        self._completions = _children(self.completions)
        self._latency = _children(self.latency)
        self._ttft = _children(self.ttft)
        self._prompt_tokens = self.tokens.labels("prompt")
        self._completion_tokens = self.tokens.labels("completion")
        self._adapter_requests = _children(self.adapter_requests)

    def observe(self, exchange: Exchange) -> None:
        stream = "true" if exchange.stream else "false"
        self._completions(exchange.endpoint, stream, exchange.outcome).inc()
        self._latency(exchange.endpoint, stream).observe(exchange.latency_s)
        if exchange.ttft_s is not None:
            self._ttft(exchange.endpoint, stream).observe(exchange.ttft_s)
        usage = exchange.usage or {}
        self._prompt_tokens.inc(usage.get("prompt_tokens") or 0)
        self._completion_tokens.inc(usage.get("completion_tokens") or 0)
        self._adapter_requests(exchange.caller.tenant_id, exchange.target.public_model).inc()

    def count_http(self, route: str, status: int) -> None:
        self._http_requests(route, str(status)).inc()

    def watch_engines(self, pool: EnginePool) -> None:
        self._add(_EngineCollector(pool))

    def watch(self, collect: Callable[[], Iterable[Any]], *, per_process: bool = False) -> None:
        """Add metrics computed at scrape time (other parts' state: the record's writer, ...). `per_process`: what
        this process alone counts, summed over the workers when there are several."""
        if per_process and self.shared_dir:
            self._mirrors.append(_Mirror(collect))
        else:
            self._add(_FunctionCollector(collect))

    def _add(self, collector: Collector) -> None:
        self.registry.register(collector)
        self._read_at_scrape.append(collector)

    async def mirror_forever(self, interval_s: float = 1.0) -> None:
        """Copy the per-process metrics into the shared files, every `interval_s`, until cancelled."""
        while True:
            for mirror in self._mirrors:
                mirror.copy()
            await asyncio.sleep(interval_s)

    def render(self) -> bytes:
        if not self.shared_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.shared_dir)
        for collector in self._read_at_scrape:
            registry.register(collector)
        return generate_latest(registry)


def _children(metric: Any) -> Callable[..., Any]:
    """`metric.labels(*values)`, each child looked up once."""
    children: dict[tuple[str, ...], Any] = {}

    def child(*values: str) -> Any:
        try:
            return children[values]
        except KeyError:
            children[values] = found = metric.labels(*values)
            return found

    return child


class _Mirror:
    """What one worker counts on its own, copied into prometheus_client's shared files: counters by their increase
    (summed over every worker that ran), gauges by their value (summed over the living workers)."""

    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        self._collect = collect
        self._metrics: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def copy(self) -> None:
        for family in self._collect():
            for sample in family.samples:
                if family.type == "counter" and sample.name.endswith("_total"):
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    increase = sample.value - self._last.get(key, 0.0)
                    self._last[key] = sample.value
                    if increase > 0:
                        self._metric(Counter, family, sample.labels).inc(increase)
                elif family.type == "gauge":
                    self._metric(Gauge, family, sample.labels).set(sample.value)

    def _metric(self, kind: type, family: Any, labels: dict[str, str]) -> Any:
        metric = self._metrics.get(family.name)
        if metric is None:
            mode = {"multiprocess_mode": "livesum"} if kind is Gauge else {}
            metric = kind(family.name, family.documentation, sorted(labels), registry=None, **mode)
            self._metrics[family.name] = metric
        return metric.labels(**labels) if labels else metric


class _EngineCollector(Collector):
    def __init__(self, pool: EnginePool) -> None:
        self._pool = pool

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("loraflow_engine_up", "1 when the engine answers its health check.", labels=["engine"])
        ready = GaugeMetricFamily(
            "loraflow_engine_ready", "1 when it also holds every wanted adapter.", labels=["engine"]
        )
        loaded = GaugeMetricFamily(
            "loraflow_engine_adapters_loaded", "Adapters loaded in the engine.", labels=["engine"]
        )
        inflight = GaugeMetricFamily("loraflow_engine_inflight_requests", "Requests running on it.", labels=["engine"])
        for engine in self._pool.engines:
            up.add_metric([engine.url], float(engine.up))
            ready.add_metric([engine.url], float(engine.ready))
            loaded.add_metric([engine.url], len(engine.loaded))
            inflight.add_metric([engine.url], engine.inflight)
        return [up, ready, loaded, inflight]


class _FunctionCollector(Collector):
    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Any]:
        return self._collect()


class HTTPMetricsMiddleware:
    """Counts every HTTP request by route template and status; pure ASGI, so streams pass untouched."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = scope.get("route")
            self.metrics.count_http(getattr(route, "path", "unmatched"), status)
