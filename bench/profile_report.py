"""Where a gateway's CPU time goes, function by function, from py-spy's collapsed stacks.

    python -m bench.profile_report PROFILE.txt [--top 40] [--requests N]

Reads the `--format raw` output of `py-spy record` (what `bench/gateway_overhead.py --profile DIR` writes): one
stack a line, frames separated by `;`, then a sample count. Prints the share of samples per library (the file of
the innermost frame), then the functions with the most samples of their own (self) and in total (inclusive: the
function or anything it called). With `--requests`, the shares are also turned into microseconds a request.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?):(?P<line>\d+)\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    """[(function, file)] outermost first; the process and thread labels are dropped."""
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        if match:
            out.append((match["func"], match["file"]))
    return out


def library(path: str) -> str:
    """What a file belongs to: the first part of a site-packages path, or the project's package."""
    path = path.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith("<frozen"):
        return "python"
    parts = path.split("/")
    if len(parts) > 1 and parts[0] in ("gateway", "feedback", "retrieval", "bench", "trainer"):
        return "/".join(parts[:2]) if parts[0] == "gateway" else parts[0]
    if "/lib/python3" in path:
        return "python:" + path.rsplit("/", 1)[-1]
    return parts[0] if len(parts) > 1 else f"python:{path}"


def report(path: Path, top: int, requests: int) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        stack_frames = frames(stack)
        if not stack_frames:
            continue
        total += count
        func, file = stack_frames[-1]
        self_time[f"{func} ({file})"] += count
        libraries[library(file)] += count
        for name in {f"{f} ({p})" for f, p in stack_frames}:
            inclusive[name] += count

    def cost(count: int) -> str:
        share = f"{100 * count / total:5.1f}%"
        return f"{share} {count / total * requests:8.1f} us/req" if requests else share

    lines = [f"{path.name}: {total} samples" + (f", {requests:.0f} us a request in all" if requests else "")]
    lines.append("\nby library (innermost frame):")
    lines += [f"  {cost(c)}  {name}" for name, c in libraries.most_common(top)]
    lines.append("\nself:")
    lines += [f"  {cost(c)}  {name}" for name, c in self_time.most_common(top)]
    lines.append("\ninclusive:")
    lines += [f"  {cost(c)}  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--requests", type=float, default=0, help="CPU microseconds a request, to scale the shares")
    args = parser.parse_args()
    for path in args.profiles:
        print(report(path, args.top, int(args.requests)))
        print()


if __name__ == "__main__":
    main()
