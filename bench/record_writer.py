"""Sustained insert rate of the record's batched writer on SQLite and PostgreSQL (target: >= 50,000 rows/s).

    python bench/record_writer.py [--rows 100000] [--batch-size 1000] [--only sqlite|postgresql]

Realistic rows (a system prompt and three turns, a 200-token answer, usage, metadata) are built before the clock
starts, as the gateway builds them on the request path; the clock covers submit() of every row through flush(),
i.e. until the last row is committed. Results go to bench/results/record_writer.{json,md} and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedback.errors import RecordBackpressure  # noqa: E402
from feedback.interaction import Interaction  # noqa: E402
from feedback.models import interactions  # noqa: E402
from feedback.settings import RecordSettings  # noqa: E402
from feedback.writer import InteractionWriter  # noqa: E402
from gateway.openai.completion_ids import new_completion_id  # noqa: E402
from gateway.store.db import make_engine, migrate  # noqa: E402

TARGET_ROWS_PER_S = 50_000
POSTGRES_ADMIN_URL = os.environ.get("LORAFLOW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RESULTS = ROOT / "bench" / "results"

SENTENCE = "the order ships within two business days and you can track it from the link in your email"


def make_rows(count: int) -> list[Interaction]:
    words = SENTENCE.split()
    answer = " ".join(words[i % len(words)] for i in range(200))  # ~200 tokens
    now = datetime.now(UTC)
    return [
        Interaction(
            id=new_completion_id("chat"),  # as the gateway makes them: time-ordered
            tenant_id=f"tenant-{n % 20}",
            key_id=f"key_{n % 50:04d}",
            model_requested="support",
            adapter_version=f"support@{1 + n % 3}",
            endpoint="chat",
            request={
                "messages": [
                    {
                        "role": "system",
                        "content": "You are the support assistant of ACME. Answer briefly and politely.",
                    },
                    {"role": "user", "content": f"Where is my order {100000 + n}? It has been a week."},
                    {"role": "assistant", "content": "Sorry for the wait. Could you give me the email on the order?"},
                    {"role": "user", "content": f"customer{n}@example.com"},
                ]
            },
            params={"temperature": 0.7, "top_p": 0.95, "max_tokens": 256},
            response_text=answer,
            finish_reason="stop",
            usage={"prompt_tokens": 86, "completion_tokens": 200, "total_tokens": 286},
            latency_ms=812.4,
            ttft_ms=41.7,
            end_user=f"user-{n % 5000}",
            metadata={"session": f"s-{n % 997}", "channel": "web"},
            stream=n % 2 == 0,
            created_at=now,
            completed_at=now,
        )
        for n in range(count)
    ]


def run_one(name: str, url: str, rows: list[Interaction], batch_size: int, spill_dir: Path) -> dict[str, object]:
    engine = make_engine(url)
    migrate(engine)
    settings = RecordSettings(batch_size=batch_size, max_queue=max(len(rows), 1))
    writer = InteractionWriter(engine, settings, spill_dir)
    writer.start()
    submit_ns: list[int] = []
    refused = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    for row in rows:
        t0 = time.perf_counter_ns()
        while True:
            try:
                writer.submit(row)
                break
            except RecordBackpressure:
                refused += 1
                time.sleep(0.001)
        submit_ns.append(time.perf_counter_ns() - t0)
    submitted = time.perf_counter() - started
    assert writer.flush(timeout=600), "writer did not drain"
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started  # this process only: PostgreSQL's own work is not in it
    stats = writer.stats()
    writer.close()
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(interactions)).scalar_one()
    engine.dispose()
    assert stored == len(rows), f"{name}: {stored} rows stored of {len(rows)}"
    submit_ns.sort()
    return {
        "database": name,
        "rows": len(rows),
        "batch_size": batch_size,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(len(rows) / elapsed),
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "meets_target": len(rows) / elapsed >= TARGET_ROWS_PER_S,
        "process_cpu_seconds": round(cpu, 3),
        "rows_per_process_cpu_s": round(len(rows) / cpu),
        "submit_seconds": round(submitted, 3),
        "submit_us_p50": round(statistics.median(submit_ns) / 1000, 2),
        "submit_us_p99": round(submit_ns[int(len(submit_ns) * 0.99)] / 1000, 2),
        "batches": stats.batches,
        "spilled": stats.spilled,
        "backpressure_retries": refused,
        "rows_stored": stored,
    }


def postgres_database() -> tuple[str, Callable[[], None]]:
    name = f"lf_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


def markdown(results: list[dict[str, object]], meta: dict[str, object]) -> str:
    lines = [
        "# Record writer: sustained insert rate",
        "",
        f"{meta['rows']} realistic interaction rows per database, batch size {meta['batch_size']}, "
        f"{meta['cpus']} CPU(s), load average {meta['load_average_before'][0]:.1f} before the run, {meta['when']}. "
        f"Target: >= {TARGET_ROWS_PER_S:,} rows/s.",
        "",
        "| database | rows/s | seconds | meets target | rows per CPU-second of this process "
        "| submit p50 (µs) | submit p99 (µs) | batches |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['database']} | {r['rows_per_s']:,} | {r['seconds']} | {'yes' if r['meets_target'] else 'no'} "
            f"| {r['rows_per_process_cpu_s']:,} | {r['submit_us_p50']} | {r['submit_us_p99']} | {r['batches']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=RecordSettings().batch_size)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()

    rows = make_rows(args.rows)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{Path(tmp) / 'record.db'}"
            results.append(run_one("sqlite", url, rows, args.batch_size, Path(tmp) / "spill-sqlite"))
        if args.only in (None, "postgresql"):
            url, drop = postgres_database()
            try:
                results.append(run_one("postgresql", url, rows, args.batch_size, Path(tmp) / "spill-pg"))
            finally:
                drop()

    meta = {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "record_writer.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    table = markdown(results, meta)
    (RESULTS / "record_writer.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
