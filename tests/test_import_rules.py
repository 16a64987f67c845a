"""DESIGN.md's rules about who imports whom, checked on the source (every import statement, wherever it is: at the
top, under `TYPE_CHECKING`, or inside a function), plus what a gateway without retrieval loads at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("gateway", "trainer", "retrieval", "feedback")
HEAVY = ("torch", "transformers", "sentence_transformers", "faiss", "numpy", "peft", "trl")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for part in PARTS for path in sorted((ROOT / part).rglob("*.py"))}


def imported(path: Path) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import in the file; `from a import b` gives `a.b` when that is a module."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in modules() else base), node.lineno


def offenders(part: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for name, path in modules().items():
        if name.split(".")[0] != part:
            continue
        for target, line in imported(path):
            if target.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return found


@pytest.mark.parametrize("part", ["feedback", "retrieval"])
def test_the_record_and_retrieval_import_neither_the_gateway_nor_the_trainer(part):
    assert offenders(part, ("gateway", "trainer")) == []


def test_the_gateway_never_imports_the_trainer():
    assert offenders("gateway", ("trainer",)) == []


def test_the_trainer_reaches_the_gateway_only_over_http():
    assert offenders("trainer", ("gateway",)) == []


def test_only_the_cli_up_command_imports_the_app_module():
    importers = {name for name, path in modules().items() for target, _ in imported(path) if target == "gateway.app"}
    assert importers == {"gateway.cli.up"}


def test_heavy_libraries_are_imported_by_the_gateway_only_where_retrieval_is_on():
    """torch, FAISS, numpy...: only inside the functions that run with retrieval on, or for type checking."""
    allowed = {"gateway.retrieval_service", "gateway.embeddings.serving", "gateway.documents_api.protocol"}
    found = [line for line in offenders("gateway", HEAVY) if module_of(line) not in allowed]
    assert found == []


def module_of(offence: str) -> str:
    return module_name(ROOT / offence.split(":")[0])


def test_no_import_cycle_in_the_gateway():
    graph = {
        name: {target for target, _ in imported(path) if target in modules() and target != name}
        for name, path in modules().items()
        if name.startswith("gateway")
    }
    cycles = strongly_connected(graph)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(sorted(c)) for c in cycles)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components with more than one module are the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_a_gateway_without_retrieval_loads_no_torch():
    """Build the app and its routes as `loraflow up` does: nothing heavy may come with them."""
    script = (
        "import sys; from gateway.app import create_app; from gateway.cli.main import app; "
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
