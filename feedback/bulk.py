"""Bulk inserts of interactions, idempotent on the id: COPY on PostgreSQL, one executemany on SQLite."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from feedback.interaction import Interaction, as_utc
from feedback.models import MAX_END_USER_CHARS, MAX_NAME_CHARS, interactions

COLUMNS = tuple(column.name for column in interactions.columns)
_COLUMN_LIST = ", ".join(f'"{name}"' for name in COLUMNS)  # quoted: `metadata` and `request` are plain names here

# Compact and UTF-8 as is; `default=str` so an odd value in client metadata never fails a batch. One C encoder
# made once (JSONEncoder.encode makes a new one per call): JSON encoding is most of a row's cost.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    _encoder = _c_make_encoder(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def _dumps(value: Any) -> str:
        return "".join(_encoder(value, 0))
else:  # pragma: no cover (a Python built without the _json accelerator)
    _fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)

    def _dumps(value: Any) -> str:
        return _fallback.encode(value)


class Inserter(Protocol):
    def insert(self, engine: Engine, batch: Sequence[Interaction], timeout_s: float) -> None:
        """Insert the batch in one transaction; rows whose id is already there are skipped."""


def inserter_for(engine: Engine) -> Inserter:
    if engine.dialect.name == "postgresql":
        return PostgresInserter()
    if engine.dialect.name == "sqlite":
        return SqliteInserter()
    raise ValueError(f"the record supports SQLite and PostgreSQL, not {engine.dialect.name}")


def is_row_error(exc: BaseException) -> bool:
    """True when the rows are at fault (a value the database refuses), not the database (down, locked, missing)."""
    exc = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's exception
    if isinstance(exc, UnicodeError):  # a lone surrogate that cannot be sent as UTF-8
        return True
    # PEP 249 names these two the same in every driver: no driver import needed.
    return any(cls.__name__ in ("DataError", "IntegrityError") for cls in type(exc).__mro__)


class SqliteInserter:
    _sql = (
        f"INSERT INTO interactions ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(COLUMNS))}) "
        "ON CONFLICT (id) DO NOTHING"
    )

    def insert(self, engine: Engine, batch: Sequence[Interaction], timeout_s: float) -> None:
        rows = [to_row(interaction, _sqlite_time) for interaction in batch]
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            # A short wait for a lock, so a batch stuck behind another writer is spilled instead of holding up the
            # queue for the engine's usual 30 s; put back afterwards, as the connection returns to a shared pool.
            previous = driver.execute("PRAGMA busy_timeout").fetchone()[0]
            driver.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            try:
                with connection.begin():
                    connection.exec_driver_sql(self._sql, rows)
            finally:
                driver.execute(f"PRAGMA busy_timeout = {int(previous)}")


class PostgresInserter:
    """COPY straight into the table; if an id is already there (a replayed batch), the same rows again through a
    temporary table and `INSERT ... ON CONFLICT DO NOTHING`. COPY is what reaches the rate: it is several times
    faster than an INSERT per row, and almost every batch is new rows."""

    def insert(self, engine: Engine, batch: Sequence[Interaction], timeout_s: float) -> None:
        import psycopg  # the postgres extra; imported only where PostgreSQL is used

        rows = [to_row(interaction, _postgres_time) for interaction in batch]
        try:
            self._copy(engine, rows, timeout_s, "interactions")
        except psycopg.errors.UniqueViolation:
            self._copy(engine, rows, timeout_s, None)

    def _copy(self, engine: Engine, rows: list[tuple[Any, ...]], timeout_s: float, table: str | None) -> None:
        with engine.begin() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                if table is None:
                    cursor.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS interactions_load "
                        "(LIKE interactions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
                with cursor.copy(f"COPY {table or 'interactions_load'} ({_COLUMN_LIST}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                if table is None:
                    cursor.execute(
                        f"INSERT INTO interactions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM interactions_load "
                        "ON CONFLICT (id) DO NOTHING"
                    )


def to_row(i: Interaction, time: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The row in COLUMNS order; JSON already encoded, descriptive strings cut to their column."""
    return (
        i.id,
        i.tenant_id,
        i.key_id[:MAX_NAME_CHARS],
        i.model_requested[:MAX_NAME_CHARS],
        i.adapter_version[:MAX_NAME_CHARS] if i.adapter_version else i.adapter_version,
        i.endpoint,
        _dumps(i.request),
        _dumps(i.params) if i.params else "{}",
        i.response_text,
        i.finish_reason[:32] if i.finish_reason else i.finish_reason,
        None if i.usage is None else _dumps(i.usage),
        float(i.latency_ms),
        None if i.ttft_ms is None else float(i.ttft_ms),
        i.end_user[:MAX_END_USER_CHARS] if i.end_user else i.end_user,
        _dumps(i.metadata) if i.metadata else "{}",
        _dumps(i.retrieved) if i.retrieved else "[]",
        bool(i.stream),
        i.outcome,
        i.error,
        time(i.created_at),
        None if i.completed_at is None else time(i.completed_at),
        i.alias[:MAX_NAME_CHARS] if i.alias else i.alias,
    )


def _sqlite_time(value: datetime) -> str:
    # SQLAlchemy's own storage format for DateTime on SQLite (UTC, always with microseconds), so its reads and
    # comparisons of these values work as for rows it wrote itself.
    return as_utc(value).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def _postgres_time(value: datetime) -> datetime:
    return as_utc(value)


_SURROGATES = re.compile("[\ud800-\udfff]")


def scrub(interaction: Interaction) -> Interaction:
    """A copy that every database accepts: no NUL characters (PostgreSQL text refuses them) and no lone
    surrogates (they cannot be encoded as UTF-8). Used only for a row that was refused as it was."""
    values = {name: _scrub_value(getattr(interaction, name)) for name in interaction.__slots__}
    return Interaction(**values)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value.replace("\x00", ""))
    if isinstance(value, dict):
        return {_scrub_value(k): _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value
