"""Every benchmark, one after another, with the defaults each documents (`make bench`); results in bench/results/.

python -m bench.run_all [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BENCHMARKS = [
    ("gateway_latency", [], ["--requests", "60", "--levels", "1,4"]),
    (  # the same on the default model, SmolLM2, with an adapter our recipe trained
        "gateway_latency",
        ["--model", "smollm2-135m-instruct", "--requests", "16", "--max-tokens", "16", "--throughput-rounds", "1"],
        ["--model", "smollm2-135m-instruct", "--requests", "8", "--levels", "1,4", "--throughput-rounds", "1"],
    ),
    (
        "gateway_overhead",
        ["--workers", "1,2,4"],
        ["--requests", "300", "--stream-requests", "40", "--levels", "1,16", "--cases", "base,alias", "--rates", "250"],
    ),
    ("completion_route", [], ["--requests", "2000"]),
    ("sqlite_workers", [], ["--workers", "1,2", "--seconds", "5"]),
    ("record_writer", [], ["--rows", "20000"]),
    ("retrieval", [], ["--quick"]),
    ("retrieval_ttft", [], ["--requests", "20"]),
    ("training_throughput", ["--threads", "1"], ["--threads", "1", "--rounds", "1", "--examples", "64"]),
    ("flywheel_cycle", [], ["--interactions", "300", "--tasks", "routing"]),
    ("scale_out", [], ["--flips", "4", "--load-s", "12"]),
    ("canary_simulation", [], ["--quick"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs, to check that every benchmark works")
    args = parser.parse_args()
    failed = []
    for name, full, quick in BENCHMARKS:
        started = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *(quick if args.quick else full)])
        print(f"=== {name}: {'ok' if code == 0 else f'failed ({code})'} in {time.monotonic() - started:.0f} s ===")
        if code:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
