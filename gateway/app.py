"""The gateway application: the routes, their error handlers and middleware. The parts behind them are built by
the lifespan (gateway/lifespan.py) and reached through `gateway.deps`. Only `loraflow up` and the tests import this.

To add a router: write `gateway/<api>/router.py` (copy one that looks like yours) and include it below.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from gateway import health
from gateway.admin import router as admin_router
from gateway.canary import router as canary_router
from gateway.console import router as console_router
from gateway.cors import add_cors
from gateway.dev_keys import with_dev_keys
from gateway.documents_api import router as documents_router
from gateway.embeddings import router as embeddings_router
from gateway.errors import install_handlers
from gateway.feedback_api import router as feedback_router
from gateway.fine_tuning import admin_router as fine_tuning_admin_router
from gateway.fine_tuning import router as fine_tuning_router
from gateway.lifespan import lifespan
from gateway.metrics import HTTPMetricsMiddleware, Metrics
from gateway.openai import router as openai_router
from gateway.openai.dispatch import CompletionDispatch
from gateway.settings import Settings
from gateway.training_api import router as training_router


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The ASGI app. `transport` replaces the network to the engines (fast tests with a fake engine)."""
    settings = with_dev_keys(settings)
    metrics = Metrics()
    app = FastAPI(title="loraflow", version="0.1.0", lifespan=lifespan(settings, metrics, transport))
    install_handlers(app)
    app.include_router(openai_router.router)  # /v1/chat/completions, /v1/completions, /v1/models
    app.include_router(feedback_router.router)  # /v1/feedback
    app.include_router(embeddings_router.router)  # /v1/embeddings (retrieval)
    app.include_router(fine_tuning_router.router)  # /v1/files, /v1/fine_tuning/jobs
    app.include_router(admin_router.router)  # /admin: tenants, keys, adapters
    app.include_router(training_router.router)  # /admin: training runs, golden sets
    app.include_router(canary_router.router)  # /admin: canaries of adapter versions
    app.include_router(feedback_router.admin_router)  # /admin: feedback, export, stats, forgetting a user
    app.include_router(documents_router.router)  # /admin: documents, index (retrieval)
    app.include_router(fine_tuning_admin_router.router)  # /admin: the trainer's job queue, promoting a job's model
    app.include_router(health.router)  # /health, /ready, /metrics
    if settings.console.enabled:
        app.include_router(console_router.router)  # /console: the web console's pages
    app.add_middleware(HTTPMetricsMiddleware, metrics=metrics)
    # The completion routes, straight to their functions past FastAPI's routing (the hot path; counted here).
    app.add_middleware(CompletionDispatch, routes=openai_router.COMPLETION_ROUTES, metrics=metrics)
    add_cors(app, settings)  # added last, so outermost: preflights are answered before anything else
    return app
