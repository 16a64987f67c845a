"""`loraflow fine-tuning ...`: a tenant's fine-tuning jobs, and promoting a job's model to an alias, through the
running gateway's admin API. (Tenants create jobs with the OpenAI SDK and their own key; `loraflow train gate-job`,
from the trainer, promotes through the evaluation gate instead.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli.client import AdminClient

out = Console()
fine_tuning = typer.Typer(
    help="Fine-tuning jobs (OpenAI's API): list them, promote a job's model.", no_args_is_help=True
)

Url = Annotated[str | None, typer.Option("--url", help="Gateway URL (default: LORAFLOW_GATEWAY_URL or the local one).")]
Tenant = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]


@fine_tuning.command("jobs")
def jobs(tenant: Tenant, limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20, url: Url = None):
    """A tenant's fine-tuning jobs, newest first."""
    rows = AdminClient(url).call("GET", f"/tenants/{tenant}/fine-tuning/jobs", params={"limit": limit})["data"]
    table = Table(title=f"Fine-tuning jobs of {tenant}", title_justify="left")
    for column in ("job", "status", "method", "model", "fine-tuned model", "created", "error"):
        table.add_column(column, overflow="fold")
    colours = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
    for job in rows:
        created = datetime.fromtimestamp(job["created_at"], UTC).strftime("%Y-%m-%d %H:%M")
        status = f"[{colours.get(job['status'], 'dim')}]{job['status']}[/]"
        error = (job.get("error") or {}).get("message", "")[:160]
        table.add_row(job["id"], status, job["method"]["type"], job["model"], job.get("fine_tuned_model") or "",
                      created, error)  # fmt: skip
    out.print(table)


@fine_tuning.command("promote")
def promote(
    job_id: Annotated[str, typer.Argument(help="The job, e.g. ftjob-0123...")],
    tenant: Tenant,
    to: Annotated[str, typer.Option("--to", help="The tenant alias that is to serve the job's model.")],
    stage_only: Annotated[bool, typer.Option(help="Register and stage it as the alias's next version only.")] = False,
    reason: Annotated[str, typer.Option(help="Kept with the promotion.")] = "",
    url: Url = None,
) -> None:
    """Serve a succeeded job's model under one of the tenant's aliases: a new version of it, promoted at once."""
    body = {"alias": to, "reason": reason, "promote": not stage_only}
    version = AdminClient(url).call("POST", f"/tenants/{tenant}/fine-tuning/jobs/{job_id}/promote", json=body)
    out.print(f"[green]✓[/] {job_id} is [bold]{version['id']}[/] ({version['state']})")
