"""The gateway's lifespan: build every part once when the process starts, in dependency order, and stop them all
when it ends. The one place that knows how the parts fit together; `app.py` only assembles the routes.

    database ─▶ catalog ─▶ engine pool ─▶ adapter lifecycle
       │                       │
       ├─▶ record writer ─▶ recorder ─┐
       └─▶ retrieval ─▶ grounder ─────┴─▶ completion service
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from feedback.tokens import FeedbackTokens
from feedback.writer import InteractionWriter
from gateway.adapter_check import BaseModel
from gateway.adapter_store import make_store
from gateway.auth import KeyVerifier
from gateway.canary.loop import CanaryDecider
from gateway.catalog import CatalogHolder
from gateway.child_process import ChildProcess
from gateway.engine.pool import EnginePool
from gateway.engine.supervisor import cuda_available, engine_environment, vllm_command
from gateway.engine.transport import AiohttpTransport
from gateway.feedback_api.jobs import start_jobs as start_record_jobs
from gateway.fine_tuning.file_store import FileStore, make_file_store
from gateway.fine_tuning.service import FineTuning
from gateway.grounding import Grounder
from gateway.lifecycle import AdapterLifecycle, AdapterLimits
from gateway.metrics import Metrics
from gateway.openai.serving import CompletionService, Observer
from gateway.recorder import Recorder, writer_metrics
from gateway.retrieval_service import start_retrieval, stop_retrieval
from gateway.settings import Settings
from gateway.state import Gateway
from gateway.store.db import make_engine, make_sessions, migrate

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


def lifespan(settings: Settings, metrics: Metrics, transport: httpx.AsyncBaseTransport | None) -> Lifespan:
    """The app's lifespan: the parts are built before the first request and put at `app.state.gateway`."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        gw = await start(settings, metrics, transport)
        app.state.gateway = gw
        try:
            yield
        finally:
            await stop(gw)

    return run


async def start(settings: Settings, metrics: Metrics, transport: httpx.AsyncBaseTransport | None) -> Gateway:
    """Every part, in dependency order, then the background loops."""
    db = make_engine(settings.sqlalchemy_url)
    await asyncio.to_thread(migrate, db)
    sessions = make_sessions(db)
    retrieval = await start_retrieval(settings, db) if settings.retrieval.enabled else None
    http = engine_client(settings, transport)
    catalog = CatalogHolder(sessions)
    await catalog.refresh()
    pool, adapters = engines_and_adapters(settings, sessions, http, catalog, network=transport is None)
    tokens = feedback_tokens(settings)
    recorder = start_recorder(settings, db, tokens, metrics) if settings.record.enabled else None
    observers: list[Observer] = [metrics.observe, *([recorder.observe] if recorder else [])]
    completions = CompletionService(
        pool,
        catalog,
        settings.public_model_name,
        settings.max_request_bytes,
        observers=observers,
        admissions=[recorder] if recorder else [],
        grounder=Grounder(retrieval, settings.retrieval, metrics.registry),
    )
    metrics.watch_engines(pool)
    canaries = CanaryDecider(sessions, adapters, catalog, settings.canary, f"{socket.gethostname()}:{os.getpid()}")
    metrics.watch(canaries.collect)
    gw = Gateway(
        settings=settings,
        db=db,
        sessions=sessions,
        http=http,
        catalog=catalog,
        pool=pool,
        keys=KeyVerifier(sessions, settings.key_cache_ttl_s),
        adapters=adapters,
        completions=completions,
        metrics=metrics,
        tokens=tokens,
        fine_tuning=FineTuning(settings, sessions, file_store(settings), catalog, adapters),
        canaries=canaries,
        recorder=recorder,
        retrieval=retrieval,
    )
    start_background(gw)
    return gw


async def stop(gw: Gateway) -> None:
    """The reverse: loops first, then the engine, the client, the record (every accepted row written or spilled),
    retrieval (rebuilds and index saves finish), the database."""
    for task in gw.tasks:
        task.cancel()
    await asyncio.gather(*gw.tasks, return_exceptions=True)
    if gw.engine_process is not None:
        log.info("stopping the engine")
        await asyncio.to_thread(gw.engine_process.stop)
    await gw.pool.aclose()
    await gw.http.aclose()
    if gw.recorder is not None:
        await asyncio.to_thread(gw.recorder.writer.close)
    if gw.retrieval is not None:
        await stop_retrieval(gw.retrieval)
    gw.db.dispose()


# The parts.


def engine_client(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    """The one HTTP client to the engines. `transport` replaces the network (fast tests with a fake engine)."""
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.engine.request_timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
    )


def engines_and_adapters(
    settings: Settings,
    sessions: sessionmaker[Session],
    http: httpx.AsyncClient,
    catalog: CatalogHolder,
    *,
    network: bool = True,
) -> tuple[EnginePool, AdapterLifecycle]:
    """The engines, and the lifecycle that registers, loads and promotes adapters on them. Completions go to the
    engines through aiohttp (a sixth of httpx's CPU a request, gateway/engine/transport.py), unless `network` is
    False: a test's fake engine is behind `http`'s transport, and completions go through `http` too."""
    store = make_store(settings.adapters.store, settings.adapters_dir, settings.adapters.s3_endpoint_url)
    pool = EnginePool(
        settings.engine_urls,
        http,
        store.engine_path,
        retry_after_s=settings.engine.retry_after_s,
        down_after_checks=settings.engine.down_after_checks,
        transport=AiohttpTransport(settings.engine.request_timeout_s) if network else None,
    )
    limits = AdapterLimits(
        base=BaseModel.from_settings(settings.base_model_path, settings.public_model_name),
        max_rank=settings.engine.max_lora_rank,
        supported_modules=settings.engine.lora_target_modules,
        max_bytes=settings.max_adapter_bytes,
    )
    adapters = AdapterLifecycle(
        sessions,
        store,
        pool,
        catalog,
        limits,
        settings.engine.drain_timeout_s,
        unload_grace_s=2 * settings.registry_poll_s,  # other replicas switch at their next registry poll
    )
    return pool, adapters


def file_store(settings: Settings) -> FileStore:
    """Uploaded files and jobs' outputs: where the adapters are (under var/files, or the same S3 bucket)."""
    return make_file_store(settings.adapters.store, settings.var_dir / "files", settings.adapters.s3_endpoint_url)


def feedback_tokens(settings: Settings) -> FeedbackTokens:
    if settings.secret_key is None:  # filled in development (dev_keys), required in production (Settings)
        raise RuntimeError("no secret key: LORAFLOW_SECRET_KEY signs feedback tokens")
    return FeedbackTokens(settings.secret_key.get_secret_value(), settings.record.token_ttl_s)


def start_recorder(settings: Settings, db: Engine, tokens: FeedbackTokens, metrics: Metrics) -> Recorder:
    """The record's batched writer on its own thread, and the recorder that hands it every completion."""
    writer = InteractionWriter(db, settings.record, settings.record.spill_dir or settings.var_dir / "spill")
    writer.start()
    metrics.watch(lambda: writer_metrics(writer.stats()), per_process=True)
    return Recorder(writer, tokens)


def start_background(gw: Gateway) -> None:
    """The loops that run beside the requests: the supervised engine, engine reconciliation, the registry poll,
    the record's jobs (stats for /metrics, retention purge), the fine-tuning jobs' checks and lost-trainer watch,
    the canaries' decisions, and, in one of several workers, the copy of its own metrics into the shared files."""
    if gw.settings.managed_engine:
        gw.engine_process = managed_engine(gw.settings)
        gw.tasks.append(asyncio.create_task(gw.engine_process.supervise(), name="engine-supervisor"))
    gw.tasks.append(asyncio.create_task(reconcile_forever(gw), name="engine-reconcile"))
    poll = gw.catalog.poll(gw.settings.registry_poll_s, lambda: reconcile_now(gw))
    gw.tasks.append(asyncio.create_task(poll, name="registry-poll"))
    gw.tasks.extend(start_record_jobs(gw))
    gw.tasks.append(asyncio.create_task(gw.fine_tuning.run(), name="fine-tuning"))
    gw.tasks.append(asyncio.create_task(gw.canaries.run(), name="canaries"))
    if gw.metrics.shared_dir:  # one of several workers (gateway/server.py): its own counts into the shared files
        gw.tasks.append(asyncio.create_task(gw.metrics.mirror_forever(), name="metrics-mirror"))


def managed_engine(settings: Settings) -> ChildProcess:
    """vLLM as a supervised child of this process, on the base model."""
    cuda = cuda_available()
    dtype = settings.engine.dtype if settings.engine.dtype != "auto" or cuda else "float32"
    command = vllm_command(
        model=settings.base_model_path,
        served_name=settings.public_model_name,
        host=settings.engine.host,
        port=settings.engine.port,
        max_lora_rank=settings.engine.max_lora_rank,
        max_loras=settings.engine.max_loras,
        max_cpu_loras=settings.engine.max_cpu_loras,
        dtype=dtype,
        max_model_len=settings.engine.max_model_len,
        extra_args=settings.engine.extra_args,
    )
    env = engine_environment(
        cpu=not cuda, kv_cache_gib=settings.engine.cpu_kv_cache_gib, threads_bind=settings.engine.cpu_threads_bind
    )
    return ChildProcess("engine", command, env, settings.var_dir / "logs" / "engine.log")


async def reconcile_now(gw: Gateway) -> None:
    await gw.pool.reconcile(gw.catalog.current.wanted())


async def reconcile_forever(gw: Gateway) -> None:
    while True:
        try:
            await reconcile_now(gw)
        except Exception:  # one bad round must not end supervision
            log.exception("engine reconcile failed")
        await asyncio.sleep(gw.settings.engine.health_interval_s)
