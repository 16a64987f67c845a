"""`loraflow docs add|list|rm|rebuild`: a tenant's documents for retrieval, through the running gateway's admin API."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, cast

import httpx
import typer
from rich.console import Console, JustifyMethod
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.cli.admin import Url
from gateway.cli.client import AdminClient, err
from gateway.settings import load_settings
from retrieval.errors import DocumentRejected
from retrieval.uploads import Upload, parse_upload

out = Console()
docs = typer.Typer(help="A tenant's documents for grounded answers: add, list, remove, rebuild the index.",
                   no_args_is_help=True)  # fmt: skip

Tenant = Annotated[str, typer.Option("--tenant", "-t", help="The tenant.")]
SUFFIXES = (".txt", ".text", ".md", ".markdown", ".jsonl", ".ndjson")
UPLOAD_TIMEOUT = httpx.Timeout(3600.0, connect=10.0)  # the gateway embeds a batch before it answers


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # the document's name: the file name, or its path under the directory given
    size: int


def collect(paths: list[Path]) -> list[LocalFile]:
    """The files named, and the text, markdown and JSONL files under the directories named (hidden ones skipped)."""
    found: list[LocalFile] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                hidden = any(part.startswith(".") for part in relative.parts)
                if child.is_file() and not hidden and child.suffix.lower() in SUFFIXES:
                    found.append(LocalFile(child, relative.as_posix(), child.stat().st_size))
        elif path.is_file():
            found.append(LocalFile(path, path.name, path.stat().st_size))
        else:
            raise typer.BadParameter(f"{path} is neither a file nor a directory", param_hint="PATHS")
    return found


def check(files: list[LocalFile]) -> None:
    """Refuse the whole command before anything is sent if one file could not be indexed (type, encoding, JSONL)."""
    # Sizes are the gateway's to judge: its limit may differ from this machine's settings.
    settings = load_settings().retrieval.model_copy(update={"max_document_bytes": 1 << 62})
    for file in files:
        try:
            parse_upload(Upload(file.name, file.path.read_bytes()), settings)
        except DocumentRejected as exc:
            err.print(f"[red]{file.path}:[/] {exc.message} Nothing was sent.")
            raise typer.Exit(1) from None


def batches(files: list[LocalFile], max_files: int, max_bytes: int) -> list[list[LocalFile]]:
    """Consecutive groups of at most `max_files` files and `max_bytes` bytes (a larger file goes alone)."""
    groups: list[list[LocalFile]] = []
    size = 0
    for file in files:
        if not groups or len(groups[-1]) >= max_files or (groups[-1] and size + file.size > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append(file)
        size += file.size
    return groups


@docs.command("add")
def add(
    tenant: Tenant,
    paths: Annotated[list[Path], typer.Argument(help="Files, or directories of .txt, .md and .jsonl files.")],
    replace: Annotated[bool, typer.Option(help="Replace stored documents of the same name (new versions).")] = False,
    metadata: Annotated[str, typer.Option(help="JSON object copied onto every document's chunks.")] = "{}",
    batch_files: Annotated[int, typer.Option(min=1, help="Most files in one upload.")] = 16,
    batch_mb: Annotated[float, typer.Option(min=0.1, help="Most megabytes in one upload.")] = 16.0,
    url: Url = None,
) -> None:
    """Upload documents: checked here first, then sent in batches (each stored whole or not at all), with a
    progress bar; a table of what was stored follows."""
    try:
        if not isinstance(json.loads(metadata), dict):
            raise ValueError
    except ValueError:
        raise typer.BadParameter("must be a JSON object", param_hint="--metadata") from None
    files = collect(paths)
    if not files:
        err.print("[yellow]No .txt, .md or .jsonl files found.[/]")
        raise typer.Exit(1)
    check(files)
    client = AdminClient(url)
    stored: list[dict[str, Any]] = []
    total = sum(file.size for file in files)
    progress = Progress(
        TextColumn("[bold]docs[/] {task.description}"), BarColumn(), DownloadColumn(),
        TextColumn("{task.fields[done]}/{task.fields[files]} files"), TimeElapsedColumn(), console=err,
    )  # fmt: skip
    try:
        with progress:
            task = progress.add_task(f"{tenant}", total=total, done=0, files=len(files))
            for group in batches(files, batch_files, int(batch_mb * 1024 * 1024)):
                body = client.call(
                    "POST", f"/tenants/{tenant}/documents", timeout=UPLOAD_TIMEOUT,
                    files=[("file", (file.name, file.path.read_bytes(), "application/octet-stream")) for file in group],
                    data={"replace": str(replace).lower(), "metadata": metadata},
                )  # fmt: skip
                stored += body["data"]
                progress.update(task, advance=sum(file.size for file in group), done=len(stored))
    finally:  # after a failed batch too: the batches before it are stored
        if stored:
            _print_stored(tenant, stored, len(files))


def _print_stored(tenant: str, stored: list[dict[str, Any]], asked: int) -> None:
    table = Table(title=f"Documents stored for {tenant}", title_justify="left")
    for column, justify in (("name", "left"), ("id", "left"), ("chunks", "right"), ("bytes", "right"),
                            ("", "left")):  # fmt: skip
        table.add_column(column, justify=cast(JustifyMethod, justify))
    for doc in stored:
        state = "[dim]unchanged[/]" if doc["existing"] else "[green]new[/]"
        table.add_row(doc["name"], doc["id"], str(doc["chunk_count"]), str(doc["size_bytes"]), state)
    out.print(table)
    new = [doc for doc in stored if not doc["existing"]]
    chunks = sum(doc["chunk_count"] for doc in new)
    line = f"[green]{len(new)} new[/] ({chunks} chunks), {len(stored) - len(new)} unchanged"
    if len(stored) < asked:
        line += f"; [red]{asked - len(stored)} not stored[/]"
    out.print(line)


@docs.command("list")
def list_(
    tenant: Tenant,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most documents to show.")] = 100,
    after: Annotated[str | None, typer.Option(help="Start after this document id (the previous page's last).")] = None,
    url: Url = None,
) -> None:
    """List a tenant's documents, oldest first, and its index."""
    client = AdminClient(url)
    params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
    page = client.call("GET", f"/tenants/{tenant}/documents", params=params)
    table = Table(title=f"Documents of {tenant}", title_justify="left")
    for column in ("id", "name", "kind", "chunks", "bytes", "created (UTC)"):
        table.add_column(column, justify="right" if column in ("chunks", "bytes") else "left")
    for doc in page["data"]:
        table.add_row(doc["id"], doc["name"], doc["kind"], str(doc["chunk_count"]), str(doc["size_bytes"]),
                      doc["created_at"][:19].replace("T", " "))  # fmt: skip
    out.print(table)
    if page["has_more"]:
        out.print(f"[dim]More: --after {page['last_id']}[/]")
    out.print(_index_line(client.call("GET", f"/tenants/{tenant}/index")))


@docs.command("rm")
def rm(
    tenant: Tenant,
    document_ids: Annotated[list[str], typer.Argument(help="Ids of the documents to delete (from `docs list`).")],
    url: Url = None,
) -> None:
    """Delete documents and their chunks; no answer is grounded in them from now on."""
    client = AdminClient(url)
    for document_id in document_ids:
        body = client.call("DELETE", f"/tenants/{tenant}/documents/{document_id}")
        out.print(f"[green]Deleted[/] {body['id']} ({body['name']}, {body['chunk_count']} chunks)")


@docs.command("rebuild")
def rebuild(
    tenant: Tenant,
    wait: Annotated[bool, typer.Option(help="Wait until the new index is in use.")] = False,
    url: Url = None,
) -> None:
    """Rebuild a tenant's index in the background; queries go on with the old one until the new one is swapped in."""
    client = AdminClient(url)
    index = client.call("POST", f"/tenants/{tenant}/documents/rebuild")
    if not wait:
        out.print(f"[green]Rebuilding[/] the index of {tenant} in the background ({index['chunks']} chunks)")
        return
    with err.status(f"Rebuilding the index of {tenant} ({index['chunks']} chunks) ..."):
        while index["state"] == "rebuilding":
            time.sleep(0.5)
            index = client.call("GET", f"/tenants/{tenant}/index")
    out.print(f"[green]Rebuilt[/] {_index_line(index)}")


def _index_line(index: dict[str, Any]) -> str:
    kind = "exact (flat)" if index["kind"] == "flat" else "HNSW"
    tombstones = f", {index['tombstones']} deleted awaiting a rebuild" if index["tombstones"] else ""
    return f"index of {index['tenant_id']}: {kind}, {index['chunks']} chunks{tombstones}, {index['state']}"
