"""`Gateway`: the process's parts, typed, made once by the lifespan (gateway/lifespan.py) and read by every route.

A leaf of the gateway's imports: routers and services import this type; it imports only the parts it holds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from feedback.tokens import FeedbackTokens
from gateway.auth import KeyVerifier
from gateway.canary.loop import CanaryDecider
from gateway.catalog import CatalogHolder
from gateway.child_process import ChildProcess
from gateway.engine.pool import EnginePool
from gateway.fine_tuning.service import FineTuning
from gateway.lifecycle import AdapterLifecycle
from gateway.metrics import Metrics
from gateway.openai.serving import CompletionService
from gateway.recorder import Recorder
from gateway.settings import Settings

if TYPE_CHECKING:
    from retrieval.service import RetrievalService  # torch and FAISS: imported for real only with retrieval on


@dataclass
class Gateway:
    """Everything a request handler may need; one per process, at `app.state.gateway`."""

    settings: Settings
    db: Engine
    sessions: sessionmaker[Session]
    http: httpx.AsyncClient  # the one client to the engines
    catalog: CatalogHolder  # the registry as of its last revision: resolves `model` with no database access
    pool: EnginePool
    keys: KeyVerifier
    adapters: AdapterLifecycle
    completions: CompletionService
    metrics: Metrics
    tokens: FeedbackTokens
    fine_tuning: FineTuning  # files and fine-tuning jobs
    canaries: CanaryDecider  # decides running canaries, from the record (gateway/canary/)
    recorder: Recorder | None = None  # None: the record is off
    retrieval: RetrievalService | None = None  # None: retrieval off (no torch in this process)
    engine_process: ChildProcess | None = None  # the supervised vLLM, when this gateway starts one
    started_at: int = field(default_factory=lambda: int(time.time()))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # background loops, cancelled at shutdown
