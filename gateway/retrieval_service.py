"""The process's retrieval service: made in the lifespan only when retrieval is on (the one place the gateway
imports torch and FAISS), closed at shutdown, and handed to the routes that need it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.errors import RetrievalDisabled
from gateway.settings import Settings
from retrieval.settings import RetrievalSettings

if TYPE_CHECKING:
    from gateway.state import Gateway
    from retrieval.service import RetrievalService

log = logging.getLogger(__name__)


async def start_retrieval(settings: Settings, db: Engine) -> RetrievalService:
    """Load the embedding model and every tenant's index now, so no first request waits for them."""
    from retrieval.service import RetrievalService  # torch, sentence-transformers, FAISS: only with retrieval on

    service = RetrievalService(settings.retrieval, db, settings.var_dir / "indexes")
    try:
        await service.start(warm_tenants=True)
    except BaseException:
        await asyncio.to_thread(service.close)
        raise
    log.info("retrieval on: %s, indexes in %s", settings.retrieval.embedding_model, settings.var_dir / "indexes")
    return service


async def stop_retrieval(service: RetrievalService) -> None:
    """Finish background rebuilds and index saves (blocking, so in a thread)."""
    await asyncio.to_thread(service.close)


def require(gw: Gateway) -> RetrievalService:
    """The service, or 400 `retrieval_disabled` on a gateway started without it."""
    if gw.retrieval is None:
        raise RetrievalDisabled()
    return gw.retrieval


def embedding_model_name(settings: RetrievalSettings) -> str:
    """The embedding model's public name (`all-MiniLM-L6-v2`): the last part of the configured name, never a path."""
    return public_name(settings.embedding_model)


def public_name(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1]
