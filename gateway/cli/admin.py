"""`loraflow tenants|keys|adapters ...`: the admin API from the command line."""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from gateway.cli.client import AdminClient

out = Console()
tenants = typer.Typer(help="Create and list tenants.", no_args_is_help=True)
keys = typer.Typer(help="Create, list and revoke a tenant's API keys.", no_args_is_help=True)
adapters = typer.Typer(help="Register adapter versions, promote, roll back.", no_args_is_help=True)

Url = Annotated[str | None, typer.Option("--url", help="Gateway URL (default: LORAFLOW_GATEWAY_URL or the local one).")]


def _table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    return table


@tenants.command("create")
def tenants_create(tenant: str, name: Annotated[str, typer.Option(help="Display name.")] = "", url: Url = None) -> None:
    """Create a tenant."""
    row = AdminClient(url).call("POST", "/tenants", json={"id": tenant, "name": name})
    out.print(f"[green]Created tenant[/] [bold]{row['id']}[/]")


@tenants.command("list")
def tenants_list(url: Url = None) -> None:
    """List tenants."""
    rows = AdminClient(url).call("GET", "/tenants")
    out.print(_table("Tenants", ["id", "name", "created"], [[t["id"], t["name"], t["created_at"][:19]] for t in rows]))


@keys.command("create")
def keys_create(
    tenant: str,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    default_adapter: Annotated[str | None, typer.Option(help="Adapter served when a request names no model.")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="Model map entry, e.g. gpt-4o-mini=support.")] = None,
    tenant_admin: Annotated[
        bool, typer.Option("--tenant-admin", help="Signed in to the console with it, it may change its tenant.")
    ] = False,
    url: Url = None,
) -> None:
    """Create an API key. It is shown once."""
    model_map = dict(entry.split("=", 1) for entry in map_ or [])
    body = {"name": name, "default_adapter": default_adapter, "model_map": model_map, "tenant_admin": tenant_admin}
    row = AdminClient(url).call("POST", f"/tenants/{tenant}/keys", json=body)
    out.print(Panel(f"[bold]{row['key']}[/]\n\nid {row['id']} — shown once; only its hash is kept.", title="API key"))


@keys.command("list")
def keys_list(tenant: str, url: Url = None) -> None:
    """List a tenant's keys (never the keys themselves)."""
    rows = AdminClient(url).call("GET", f"/tenants/{tenant}/keys")
    table_rows = [
        [k["id"], k["prefix"] + "…", k["name"], k["default_adapter"],
         json.dumps(k["model_map"]) if k["model_map"] else "", "revoked" if k["revoked_at"] else "active"]
        for k in rows
    ]  # fmt: skip
    out.print(_table(f"Keys of {tenant}", ["id", "key", "name", "default adapter", "model map", "state"], table_rows))


@keys.command("revoke")
def keys_revoke(tenant: str, key_id: str, url: Url = None) -> None:
    """Revoke a key."""
    AdminClient(url).call("DELETE", f"/tenants/{tenant}/keys/{key_id}")
    out.print(f"[green]Revoked[/] {key_id}")


@adapters.command("register")
def adapters_register(
    tenant: str,
    alias: str,
    path: Annotated[Path, typer.Argument(help="A PEFT adapter directory, or a .tar.gz of one.")],
    server_path: Annotated[
        bool, typer.Option(help="PATH is on the gateway's machine: send the path, not the files.")
    ] = False,
    lineage: Annotated[str, typer.Option(help="JSON object describing where it came from.")] = "{}",
    url: Url = None,
) -> None:
    """Register a new version of an adapter (checked before it is accepted)."""
    client = AdminClient(url)
    route = f"/tenants/{tenant}/adapters/{alias}/versions"
    if server_path:
        row = client.call("POST", route, json={"path": str(path), "lineage": json.loads(lineage)})
    elif path.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "adapter.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(path, arcname=alias)
            row = client.upload(route, archive, lineage)
    else:
        row = client.upload(route, path, lineage)
    out.print(f"[green]Registered[/] [bold]{row['id']}[/] ({row['state']}, rank {row['rank']})")


@adapters.command("list")
def adapters_list(tenant: str, url: Url = None) -> None:
    """List a tenant's adapters and what each serves."""
    rows = AdminClient(url).call("GET", f"/tenants/{tenant}/adapters")
    table_rows = [[a["alias"], a["production"] or "—", len(a["versions"])] for a in rows]
    out.print(_table(f"Adapters of {tenant}", ["alias", "production", "versions"], table_rows))


@adapters.command("versions")
def adapters_versions(tenant: str, alias: str, url: Url = None) -> None:
    """List an adapter's versions."""
    rows = AdminClient(url).call("GET", f"/tenants/{tenant}/adapters/{alias}/versions")
    table_rows = [[v["id"], v["state"], v["rank"], v["sha256"][:12], v["created_at"][:19]] for v in rows]
    out.print(_table(f"{tenant}/{alias}", ["version", "state", "rank", "sha256", "created"], table_rows))


@adapters.command("promote")
def adapters_promote(
    tenant: str, alias: str, version: int, reason: Annotated[str, typer.Option()] = "", url: Url = None
) -> None:
    """Make VERSION the alias's production version, with no downtime."""
    row = AdminClient(url).call(
        "POST", f"/tenants/{tenant}/adapters/{alias}/promote", json={"version": version, "reason": reason}
    )
    out.print(f"[green]{alias} now serves[/] [bold]{row['id']}[/]")


@adapters.command("rollback")
def adapters_rollback(tenant: str, alias: str, reason: Annotated[str, typer.Option()] = "", url: Url = None) -> None:
    """Serve the version that was in production before the current one."""
    row = AdminClient(url).call("POST", f"/tenants/{tenant}/adapters/{alias}/rollback", json={"reason": reason})
    out.print(f"[yellow]{alias} rolled back to[/] [bold]{row['id']}[/]")


@adapters.command("stage")
def adapters_stage(tenant: str, alias: str, version: int, url: Url = None) -> None:
    """Load a version in the engines, to try it pinned (`alias@version`) before promoting it."""
    row = AdminClient(url).call("POST", f"/tenants/{tenant}/adapters/{alias}/versions/{version}/stage")
    out.print(f"[green]Staged[/] [bold]{row['id']}[/]")


@adapters.command("retire")
def adapters_retire(tenant: str, alias: str, version: int, url: Url = None) -> None:
    """Take a version that is not in production out of the engines."""
    row = AdminClient(url).call("POST", f"/tenants/{tenant}/adapters/{alias}/versions/{version}/retire")
    out.print(f"[green]Retired[/] [bold]{row['id']}[/]")


canary = typer.Typer(help="Prove a version on a share of an alias's users before it takes all traffic.")
adapters.add_typer(canary, name="canary")


@canary.command("start")
def canary_start(
    tenant: str,
    alias: str,
    version: int,
    share: Annotated[float, typer.Option(help="Share of the alias's users it serves.")] = 0.1,
    max_ratings: Annotated[int, typer.Option(help="Ratings counted before the budget decides.")] = 5000,
    max_hours: Annotated[float, typer.Option(help="Hours before the budget decides.")] = 168.0,
    on_budget: Annotated[
        str, typer.Option(help="promote or rollback, when the budget runs out undecided.")
    ] = "rollback",
    url: Url = None,
) -> None:
    """Serve VERSION to a share of the alias's users; the gateway promotes it or sends it back by their ratings."""
    body = {"version": version, "share": share, "max_ratings": max_ratings, "max_duration_s": max_hours * 3600,
            "on_budget": on_budget}  # fmt: skip
    row = AdminClient(url).call("POST", f"/tenants/{tenant}/adapters/{alias}/canary", json=body)
    out.print(f"[green]Canary {row['id']}[/]: {row['candidate']} serves {row['share']:.0%} of {alias}'s users")


@canary.command("show")
def canary_show(tenant: str, alias: str, url: Url = None) -> None:
    """The alias's running canary (else its last one), with the evidence per arm."""
    row = AdminClient(url).call("GET", f"/tenants/{tenant}/adapters/{alias}/canary")
    evidence = row["evidence"]
    sides = (("candidate", "candidate", row["candidate"]), ("production", "control", row["control"]))
    arms = [
        [name, version or "base model", evidence[key]["ratings"], evidence[key]["ups"], _rate(evidence[key]["rate"])]
        for name, key, version in sides
    ]
    title = f"Canary {row['id']} of {tenant}/{alias}: {row['status']} ({row['share']:.0%} to the candidate)"
    out.print(_table(title, ["arm", "version", "ratings", "👍", "👍 rate"], arms))
    threshold = evidence.get("threshold", 0.0)
    out.print(
        f"log e-value better {evidence['log_e_better']:.2f}, worse {evidence['log_e_worse']:.2f} "
        f"(decides at {threshold:.2f}) — {row['reason']}"
    )


@canary.command("stop")
def canary_stop(
    tenant: str,
    alias: str,
    decision: Annotated[str, typer.Option(help="promote or rollback.")],
    reason: Annotated[str, typer.Option()] = "",
    url: Url = None,
) -> None:
    """End the running canary now with your decision."""
    body = {"decision": decision, "reason": reason}
    row = AdminClient(url).call("POST", f"/tenants/{tenant}/adapters/{alias}/canary/stop", json=body)
    out.print(f"[yellow]Canary {row['id']}: {row['status']}[/] — {row['reason']}")


def _rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.3f}"
