"""The gateway application: its parts, made once per process in the lifespan, and the routes on top."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from feedback.tokens import FeedbackTokens
from feedback.writer import InteractionWriter
from gateway import health
from gateway.adapter_check import BaseModel
from gateway.adapter_store import make_store
from gateway.admin import router as admin_router
from gateway.auth import KeyVerifier
from gateway.catalog import CatalogHolder
from gateway.child_process import ChildProcess
from gateway.dev_keys import with_dev_keys
from gateway.documents_api import router as documents_router  # retrieval: documents admin API
from gateway.embeddings import router as embeddings_router  # retrieval: /v1/embeddings
from gateway.engine.pool import EnginePool
from gateway.engine.supervisor import cuda_available, engine_environment, vllm_command
from gateway.errors import install_handlers
from gateway.grounding import Grounder
from gateway.lifecycle import AdapterLifecycle, AdapterLimits
from gateway.metrics import HTTPMetricsMiddleware, Metrics
from gateway.openai import router as openai_router
from gateway.openai.serving import CompletionService
from gateway.record_api import background as record_background  # the record's APIs and jobs
from gateway.record_api import router as record_router
from gateway.recording import Recorder, writer_metrics
from gateway.retrieval_service import start_retrieval, stop_retrieval
from gateway.settings import Settings
from gateway.store.db import make_engine, make_sessions, migrate
from gateway.training_api import router as training_router

if TYPE_CHECKING:
    from retrieval.service import RetrievalService  # imported for real only with retrieval on

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Everything a request handler may need, typed; one per process (`request.app.state.gateway`)."""

    settings: Settings
    db: Engine
    sessions: sessionmaker[Session]
    http: httpx.AsyncClient
    catalog: CatalogHolder
    pool: EnginePool
    keys: KeyVerifier
    adapters: AdapterLifecycle
    completions: CompletionService
    metrics: Metrics
    tokens: FeedbackTokens
    recorder: Recorder | None = None
    retrieval: RetrievalService | None = None  # None: retrieval off (no torch in this process)
    engine_process: ChildProcess | None = None
    started_at: int = field(default_factory=lambda: int(time.time()))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The ASGI app. `transport` replaces the network to the engines (fast tests with a fake engine)."""
    settings = with_dev_keys(settings)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw = await start(settings, metrics, transport)
        app.state.gateway = gw
        try:
            yield
        finally:
            await stop(gw)

    app = FastAPI(title="loraflow", version="0.1.0", lifespan=lifespan)
    install_handlers(app)
    app.include_router(openai_router.router)
    app.include_router(admin_router.router)
    app.include_router(training_router.router)
    app.include_router(record_router.router)  # the record: /v1/feedback
    app.include_router(record_router.admin_router)  # the record: /admin/tenants/{t}/feedback, stats, users
    app.include_router(embeddings_router.router)  # retrieval: /v1/embeddings
    app.include_router(documents_router.router)  # retrieval: /admin/tenants/{t}/documents, index
    app.include_router(health.router)
    app.add_middleware(HTTPMetricsMiddleware, metrics=metrics)
    record_background.add_cors(app, settings)  # last added is outermost: preflights answered before anything
    return app


async def start(settings: Settings, metrics: Metrics, transport: httpx.AsyncBaseTransport | None) -> Gateway:
    db = make_engine(settings.sqlalchemy_url)
    await asyncio.to_thread(migrate, db)
    sessions = make_sessions(db)
    retrieval = await start_retrieval(settings, db) if settings.retrieval.enabled else None
    http = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.engine.request_timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
    )
    catalog = CatalogHolder(sessions)
    await catalog.refresh()
    store = make_store(settings.adapters.store, settings.adapters_dir, settings.adapters.s3_endpoint_url)
    pool = EnginePool(
        settings.engine_urls,
        http,
        store.engine_path,
        retry_after_s=settings.engine.retry_after_s,
        down_after_checks=settings.engine.down_after_checks,
    )
    limits = AdapterLimits(
        base=BaseModel.from_settings(settings.base_model_path, settings.public_model_name),
        max_rank=settings.engine.max_lora_rank,
        supported_modules=settings.engine.lora_target_modules,
        max_bytes=settings.max_adapter_bytes,
    )
    assert settings.secret_key is not None  # filled by with_dev_keys, required in production
    tokens = FeedbackTokens(settings.secret_key.get_secret_value(), settings.record.token_ttl_s)
    recorder = None
    if settings.record.enabled:
        writer = InteractionWriter(db, settings.record, settings.record.spill_dir or settings.var_dir / "spill")
        writer.start()
        recorder = Recorder(writer, tokens)
        metrics.watch(lambda: writer_metrics(writer.stats()))
    completions = CompletionService(
        pool,
        catalog,
        settings.public_model_name,
        settings.max_request_bytes,
        observers=[metrics.observe] + ([recorder.observe] if recorder else []),
        admissions=[recorder] if recorder else [],
        grounder=Grounder(retrieval, settings.retrieval, metrics.registry),
    )
    metrics.watch_engines(pool)
    gw = Gateway(
        settings=settings,
        db=db,
        sessions=sessions,
        http=http,
        catalog=catalog,
        pool=pool,
        keys=KeyVerifier(sessions, settings.key_cache_ttl_s),
        adapters=AdapterLifecycle(
            sessions,
            store,
            pool,
            catalog,
            limits,
            settings.engine.drain_timeout_s,
            unload_grace_s=2 * settings.registry_poll_s,
        ),
        completions=completions,
        metrics=metrics,
        tokens=tokens,
        recorder=recorder,
        retrieval=retrieval,
    )
    if settings.managed_engine:
        gw.engine_process = managed_engine(settings)
        gw.tasks.append(asyncio.create_task(gw.engine_process.supervise(), name="engine-supervisor"))
    gw.tasks.append(asyncio.create_task(reconcile_forever(gw), name="engine-reconcile"))
    gw.tasks.append(
        asyncio.create_task(catalog.poll(settings.registry_poll_s, lambda: reconcile_now(gw)), name="registry-poll")
    )
    gw.tasks.extend(record_background.start_jobs(gw))  # the record: stats for /metrics, retention purge
    return gw


async def stop(gw: Gateway) -> None:
    for task in gw.tasks:
        task.cancel()
    await asyncio.gather(*gw.tasks, return_exceptions=True)
    if gw.engine_process is not None:
        log.info("stopping the engine")
        await asyncio.to_thread(gw.engine_process.stop)
    await gw.http.aclose()
    if gw.recorder is not None:
        await asyncio.to_thread(gw.recorder.writer.close)  # every accepted row written, or spilled for next start
    if gw.retrieval is not None:  # rebuilds and index saves finish
        await stop_retrieval(gw.retrieval)
    gw.db.dispose()


def managed_engine(settings: Settings) -> ChildProcess:
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
