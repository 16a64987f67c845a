"""How many gateway processes one SQLite database takes: N processes writing the record at once, as `--workers N`.

    python -m bench.sqlite_workers [--workers 1,2,4,8] [--rate 1500] [--seconds 20] [--ratings 0.05]

Each process does what a gateway worker does to the database under load: the record's writer (the real
InteractionWriter, default settings: batches of up to 1,000 rows, 50 ms, 5 s to get the write lock before a batch is
spilled) takes `--rate` rows a second (about what one gateway process serves, bench/gateway_overhead.py); beside it,
ratings (`--ratings` of the rows, each a short transaction of its own, as POST /v1/feedback makes them, waiting up to
30 s for the lock) and key lookups (reads). SQLite takes one writer at a time: the question is at what N the record
stops keeping up (rows spilled, a backlog that grows), or a rating fails with `database is locked`.
Writes bench/results/sqlite_workers.{json,md}.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from bench import results_file
from bench.record_writer import make_rows
from feedback.models import feedback, interactions
from feedback.settings import RecordSettings
from feedback.writer import InteractionWriter
from gateway.store.db import make_engine, migrate


def worker(url: str, spill: str, rate: float, seconds: float, ratings: float, out: Any) -> None:
    engine = make_engine(url)
    writer = InteractionWriter(engine, RecordSettings(), Path(spill))
    writer.start()
    rows = make_rows(int(rate * seconds) + 1)
    locked, rating_waits, lookups = 0, [], 0
    started = time.monotonic()
    every = 1 / rate
    rated_every = max(1, round(1 / ratings)) if ratings else 0
    for n, row in enumerate(rows):
        due = started + n * every
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        writer.submit(row)
        if rated_every and n % rated_every == rated_every - 1 and n > 2000:  # rows written a moment ago
            began = time.monotonic()
            try:
                with engine.begin() as connection:  # as feedback.ratings._store: read, then one insert
                    served = rows[n - 2000]
                    connection.execute(select(interactions.c.tenant_id).where(interactions.c.id == served.id)).first()
                    connection.execute(insert(feedback).values(
                        id=f"fb_{uuid.uuid4().hex}", tenant_id=served.tenant_id, interaction_id=served.id,
                        adapter_version=served.adapter_version, rating=1, end_user="", created_at=served.created_at,
                        updated_at=served.created_at))  # fmt: skip
            except OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                locked += 1
            rating_waits.append(time.monotonic() - began)
        if n % 100 == 0:  # a key lookup now and then (most are cached in the gateway)
            with engine.connect() as connection:
                connection.execute(select(interactions.c.id).limit(1)).first()
                lookups += 1
    offered_s = time.monotonic() - started
    backlog = writer.stats().queued
    flushed = writer.flush(120)
    stats = writer.stats()
    writer.close()
    engine.dispose()
    out.put({"accepted": stats.accepted, "written": stats.written, "spilled": stats.spilled, "errors": stats.errors,
             "backpressure": stats.backpressure, "backlog_at_end": backlog, "flushed": flushed,
             "offered_s": offered_s, "locked": locked, "ratings": len(rating_waits),
             "rating_wait_p99_s": statistics.quantiles(rating_waits, n=100)[98] if len(rating_waits) > 100 else None,
             "last_error": stats.last_error})  # fmt: skip


def run(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    url = f"sqlite:///{work / f'n{n}.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [context.Process(target=worker, args=(url, str(work / f"spill-{n}-{i}"), args.rate, args.seconds,
                                                       args.ratings, out)) for i in range(n)]  # fmt: skip
    started = time.monotonic()
    for process in processes:
        process.start()
    results = [out.get() for _ in processes]
    for process in processes:
        process.join()
    wall = time.monotonic() - started
    total = {key: sum(r[key] for r in results) for key in ("accepted", "written", "spilled", "errors", "locked",
                                                            "ratings", "backpressure", "backlog_at_end")}  # fmt: skip
    waits = [r["rating_wait_p99_s"] for r in results if r["rating_wait_p99_s"] is not None]
    return {**total, "workers": n, "offered_rows_per_s": n * args.rate, "written_rows_per_s": total["written"] / wall,
            "all_flushed": all(r["flushed"] for r in results), "offer_kept_pace": max(r["offered_s"] for r in results)
            <= args.seconds * 1.1, "rating_wait_p99_s": max(waits) if waits else None,
            "last_errors": sorted({r["last_error"] for r in results if r["last_error"]})[:3]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--rate", type=float, default=1500.0, help="rows a second each process offers")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ratings", type=float, default=0.05, help="share of rows that get a rating")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="loraflow-sqlite-workers-") as tmp:
        for n in (int(w) for w in args.workers.split(",")):
            results.append(run(n, args, Path(tmp)))
            r = results[-1]
            print(f"N={n}: offered {r['offered_rows_per_s']:.0f} rows/s, written {r['written_rows_per_s']:.0f} rows/s, "
                  f"spilled {r['spilled']}, backlog at end {r['backlog_at_end']}, ratings {r['ratings']} "
                  f"(locked {r['locked']}, p99 wait {r['rating_wait_p99_s']})", flush=True)  # fmt: skip
    data = {"machine": results_file.machine(), "command": "python -m bench.sqlite_workers " + " ".join(sys.argv[1:]),
            "results": results}  # fmt: skip
    text = f"# SQLite under N gateway processes\n\n{data['machine']}\n\n`{data['command']}`\n\n" + results_file.table(
        ["workers", "offered rows/s", "written rows/s", "spilled", "backlog at end", "write errors", "ratings",
         "database is locked", "rating wait p99 s", "offer kept pace"],
        [[r["workers"], r["offered_rows_per_s"], r["written_rows_per_s"], r["spilled"], r["backlog_at_end"],
          r["errors"], r["ratings"], r["locked"], r["rating_wait_p99_s"], r["offer_kept_pace"]] for r in results],
    )  # fmt: skip
    results_file.write("sqlite_workers", data, text)
    print(text)


if __name__ == "__main__":
    main()
