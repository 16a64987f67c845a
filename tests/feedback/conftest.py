"""Fixtures of the record's tests: interactions to write, fast writer settings, and a database outage on demand."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from feedback.bulk import inserter_for
from feedback.interaction import Interaction
from feedback.models import interactions
from feedback.settings import RecordSettings
from feedback.writer import InteractionWriter


@pytest.fixture
def make_interaction() -> Callable[..., Interaction]:
    def make(**fields: Any) -> Interaction:
        values: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "tenant_id": "acme",
            "key_id": "key_1",
            "model_requested": "support",
            "adapter_version": "support@1",
            "endpoint": "chat",
            "request": {"messages": [{"role": "user", "content": "Where is my order?"}]},
            "params": {"temperature": 0.2},
            "response_text": "It ships tomorrow.",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
            "latency_ms": 120.0,
            "ttft_ms": 15.0,
            "end_user": "user-1",
            "created_at": datetime.now(UTC),
            "completed_at": datetime.now(UTC),
        }
        values.update(fields)
        return Interaction(**values)

    return make


@pytest.fixture
def seed(db: Engine) -> Callable[..., None]:
    """Write interactions straight to the database (no writer thread)."""

    def write(*batch: Interaction) -> None:
        inserter_for(db).insert(db, batch, 5.0)

    return write


@pytest.fixture
def record_settings() -> RecordSettings:
    # Short waits so that outages, retries and replays happen within a test's second or two.
    return RecordSettings(batch_size=100, flush_interval_s=0.01, retry_interval_s=0.1, write_timeout_s=0.3)


@pytest.fixture
def make_writer(
    db: Engine, record_settings: RecordSettings, tmp_path: Path
) -> Iterator[Callable[..., InteractionWriter]]:
    writers: list[InteractionWriter] = []

    def make(engine: Engine | None = None, spill_dir: Path | None = None, **overrides: Any) -> InteractionWriter:
        settings = record_settings.model_copy(update=overrides)
        writer = InteractionWriter(engine or db, settings, spill_dir or tmp_path / "spill")
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close(timeout=10)


@pytest.fixture
def count_rows(db: Engine) -> Callable[..., int]:
    def count(table: Any = interactions) -> int:
        with db.connect() as connection:
            return connection.execute(select(func.count()).select_from(table)).scalar_one()

    return count


@pytest.fixture
def outage(db: Engine) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context manager during which the test's database refuses the writer: on PostgreSQL its connections are
    terminated and new ones refused (as during a restart, without disturbing other suites' databases); on SQLite
    another connection holds an exclusive lock."""

    @contextlib.contextmanager
    def down() -> Iterator[None]:
        if db.dialect.name == "sqlite":
            lock = sqlite3.connect(db.url.database, timeout=5, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            return
        name = db.url.database
        admin = create_engine(db.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
            )
        try:
            yield
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            admin.dispose()

    return down
