"""Serving the gateway's app with uvicorn: in this process, or in N worker processes on one port (`--workers N`).

Each worker is a whole gateway (event loop, record writer, registry poll, engine checks), as separate replicas on
one host are: registry changes reach every worker through the registry revision each one polls, each writes its own
completions to the record, and the kernel spreads connections over the workers (one listening socket, shared).
What a host must run once runs in the parent, never in a worker: the supervised engine (here) and the trainer's
scheduler (`loraflow up`). The workers are spawned, not forked, and rebuilt from the parent's settings; uvicorn
restarts one that dies. Prometheus counters are kept in shared files (prometheus_client's multiprocess mode), so a
scrape that reaches any worker counts every worker's requests.

With the embedded SQLite database, at most SQLITE_MAX_WORKERS workers: every worker writes its completions to the
one file, and SQLite takes one writer at a time (measured in bench/sqlite_workers.py; PostgreSQL has no such limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from gateway.lifespan import managed_engine
from gateway.settings import Settings
from gateway.store.db import make_engine, migrate

log = logging.getLogger(__name__)

SQLITE_MAX_WORKERS = 4
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

AppFactory = Callable[[Settings], FastAPI]


class TooManyWorkers(ValueError):
    pass


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse a number of workers this database cannot take, saying what to do instead."""
    if workers < 1:
        raise TooManyWorkers("--workers must be at least 1.")
    if workers > SQLITE_MAX_WORKERS and settings.sqlalchemy_url.startswith("sqlite"):
        raise TooManyWorkers(
            f"--workers {workers}: with the embedded SQLite database at most {SQLITE_MAX_WORKERS} gateway processes "
            "write to it (SQLite takes one writer at a time; past that the record falls behind under load). "
            "Use PostgreSQL for more: LORAFLOW_DATABASE_URL=postgresql://user:pass@host/loraflow."
        )


def serve(settings: Settings, make_app: AppFactory, workers: int = 1) -> None:
    """Serve until interrupted. One worker: the app in this process, supervising its engine itself (the lifespan)."""
    check_workers(settings, workers)
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": "warning", "access_log": False}
    if workers == 1:
        uvicorn.run(partial(build_app, make_app, settings), factory=True, **common)
        return
    db = make_engine(settings.sqlalchemy_url)
    try:  # once, before the workers start: on SQLite, N first-time migrations at once would collide
        migrate(db)
    finally:
        db.dispose()
    engine = None
    if settings.managed_engine:  # one engine for the host: this process supervises it, the workers attach to it
        engine = managed_engine(settings)
        threading.Thread(target=asyncio.run, args=(engine.supervise(),), daemon=True, name="engine-supervisor").start()
        settings = settings.model_copy(
            update={"engine": settings.engine.model_copy(update={"urls": settings.engine_urls})}
        )
    metrics_dir = settings.var_dir / "run" / f"prometheus-{settings.port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counts of an earlier run are not this one's
    metrics_dir.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(metrics_dir)  # read by prometheus_client in each spawned worker
    config = uvicorn.Config(partial(build_app, make_app, settings), factory=True, workers=workers, **common)
    try:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        if engine is not None:
            log.info("stopping the engine")
            engine.stop()


def build_app(make_app: AppFactory, settings: Settings) -> FastAPI:
    """The app as a server process runs it: once its lifespan has built every part, what is then in memory is
    moved out of the garbage collector's way (gc.freeze): later collections walk only what requests make, so they
    stay short (a full collection over the imported libraries and the parts takes tens of milliseconds, a p99
    the client sees)."""
    app = make_app(settings)
    lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def frozen_after_startup(app: FastAPI) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = frozen_after_startup
    return app
