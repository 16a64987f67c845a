"""`loraflow feedback export|stats|list|forget`: the record through the admin API of the running gateway."""

from __future__ import annotations

import contextlib
import re
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any, cast

import httpx
import typer
from rich.console import Console, JustifyMethod
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.cli.admin import Url
from gateway.cli.client import AdminClient, err

out = Console()
feedback = typer.Typer(help="The record: ratings, datasets, stats per adapter version, forgetting a user.",
                       no_args_is_help=True)  # fmt: skip

EXPORT_ROWS_HEADER = "x-loraflow-export-ratings"  # gateway/feedback_api/service.py
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ExportFormat(StrEnum):
    chat = "chat"
    kto = "kto"


class Rating(StrEnum):
    up = "up"
    down = "down"


def parse_when(value: str | None) -> str | None:
    """`7d`, `12h`, `30m`, `2w` (that long ago) or an ISO 8601 date/time, as the ISO string the API takes."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = match.groups()
        return (datetime.now(UTC) - timedelta(**{_UNITS[unit]: float(amount)})).isoformat()
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither an ISO date/time nor an age like 7d, 12h, 30m") from None


Tenant = Annotated[str, typer.Option("--tenant", "-t", help="The tenant.")]
Since = Annotated[str | None, typer.Option(help="From this ISO date/time, or this long ago: 7d, 12h, 30m.")]
Until = Annotated[str | None, typer.Option(help="Before this ISO date/time, or this long ago.")]
Adapter = Annotated[str | None, typer.Option(help="A version (support@2) or an alias (all its versions).")]


@feedback.command("export")
def export(
    tenant: Tenant,
    since: Since = None,
    until: Until = None,
    format_: Annotated[ExportFormat, typer.Option("--format", help="chat: OpenAI fine-tuning; kto: TRL.")] = (
        ExportFormat.chat
    ),
    adapter: Adapter = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")] = None,
    with_ids: Annotated[bool, typer.Option(help="Add completion_id and adapter_version to each line.")] = False,
    url: Url = None,
) -> None:
    """Export rated interactions as a JSONL dataset, with a progress bar."""
    params = {"format": format_.value, "since": parse_when(since), "until": parse_when(until), "adapter": adapter,
              "with_ids": with_ids}  # fmt: skip
    params = {key: value for key, value in params.items() if value is not None}
    # Written next to the target and renamed at the end: an interrupted export never looks like a finished one.
    partial = output.with_name(output.name + ".partial") if output else None
    lines = 0
    with AdminClient(url).stream("GET", f"/tenants/{tenant}/feedback/export", params=params) as response:
        total = int(response.headers.get(EXPORT_ROWS_HEADER, "0")) or None
        progress = Progress(
            TextColumn("[bold]export[/] {task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[lines]} examples"), TimeElapsedColumn(), console=err, transient=output is None,
        )  # fmt: skip
        with progress, _open(partial) as sink:
            # The total is the ratings the export reads, and a line is one example: chat leaves out a thumbs-down
            # without a correction, kto may make two of one rating. So the bar is an estimate until it completes.
            task = progress.add_task(f"{tenant} ({format_.value})", total=total, lines=0)
            try:
                for line in response.iter_lines():
                    if line:
                        sink.write(line + "\n")
                        lines += 1
                        progress.update(task, completed=min(lines, total or lines), lines=lines)
            except httpx.HTTPError as exc:
                err.print(f"[red]The export was cut short:[/] {exc}")
                raise typer.Exit(1) from None
            progress.update(task, completed=total or lines, total=total or lines, lines=lines)
    if output is not None and partial is not None:
        partial.replace(output)
        out.print(f"[green]Wrote[/] {lines} examples to [bold]{output}[/] (from {total or 0} ratings)")


@contextlib.contextmanager
def _open(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with path.open("w", encoding="utf-8") as handle:
        try:
            yield handle
        except BaseException:
            handle.close()
            path.unlink(missing_ok=True)
            raise


@feedback.command("stats")
def stats(tenant: Tenant, since: Since = None, until: Until = None, url: Url = None) -> None:
    """Thumbs-up rate per adapter version, with its 95% interval."""
    params = {key: value for key, value in {"since": parse_when(since), "until": parse_when(until)}.items() if value}
    body = AdminClient(url).call("GET", f"/tenants/{tenant}/stats", params=params)
    table = Table(title=f"Feedback of {tenant}", title_justify="left")
    for column, justify in (("version", "left"), ("interactions", "right"), ("👍", "right"), ("👎", "right"),
                            ("up-rate (95% interval)", "right")):  # fmt: skip
        table.add_column(column, justify=cast(JustifyMethod, justify))
    for row in body["data"]:
        table.add_row(row["model"], str(row["interactions"]), str(row["up"]), str(row["down"]), _rate(row))
    out.print(table)


def _rate(row: dict[str, Any]) -> str:
    if row["up_rate"] is None:
        return "—"
    return f"{row['up_rate']:.0%} ({row['up_rate_low']:.0%} to {row['up_rate_high']:.0%})"


@feedback.command("list")
def list_(
    tenant: Tenant,
    adapter: Adapter = None,
    rating: Annotated[Rating | None, typer.Option(help="Only up or only down.")] = None,
    user: Annotated[str | None, typer.Option(help="Ratings by this end user.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most ratings to show.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Where the previous page ended.")] = None,
    url: Url = None,
) -> None:
    """List ratings, newest first."""
    params = {"adapter": adapter, "rating": rating.value if rating else None, "user": user, "since": parse_when(since),
              "until": parse_when(until), "limit": limit, "cursor": cursor}  # fmt: skip
    body = AdminClient(url).call(
        "GET", f"/tenants/{tenant}/feedback", params={k: v for k, v in params.items() if v is not None}
    )
    table = Table(title=f"Ratings of {tenant}", title_justify="left")
    for column in ("when (UTC)", "completion", "version", "rating", "user", "comment", "correction"):
        table.add_column(column, overflow="fold" if column in ("comment", "correction") else "ellipsis")
    for row in body["data"]:
        table.add_row(
            datetime.fromtimestamp(row["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S"), row["completion_id"],
            row["adapter_version"] or "(base)", "👍" if row["rating"] == "up" else "👎", row["user"] or "",
            _short(row["comment"]), _short(row["correction"]),
        )  # fmt: skip
    out.print(table)
    if body["next_cursor"]:
        out.print(f"[dim]More: --cursor {body['next_cursor']}[/]")


def _short(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@feedback.command("forget")
def forget(
    tenant: Tenant,
    user: Annotated[str, typer.Option("--user", "-u", help="The end user (the OpenAI `user` field).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: Url = None,
) -> None:
    """Delete everything recorded for one end user of a tenant: interactions, and ratings of and by them."""
    if not yes:
        typer.confirm(f"Delete everything recorded for user {user!r} of {tenant}?", abort=True)
    body = AdminClient(url).call("DELETE", f"/tenants/{tenant}/users/{urllib.parse.quote(user, safe='')}")
    out.print(f"[green]Forgot[/] {user}: {body['interactions']} interactions and {body['feedback']} ratings deleted")
