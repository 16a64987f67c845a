"""The trainer's `loraflow` commands, joined to the gateway's CLI through the `loraflow.commands` entry point.

    loraflow train --tenant acme [--adapter support] [--force]   one run now (what the schedule runs)
    loraflow train --all                                         every scheduled tenant and alias, one after another
    loraflow train runs --tenant acme                            the tenant's runs
    loraflow train show RUN_ID --tenant acme                     a run's report
    loraflow train approve|reject RUN_ID --tenant acme           a person's verdict on a run held for review
    loraflow train golden --tenant acme --adapter support FILE   upload a golden set (JSONL)
    loraflow train gate-job JOB --tenant acme --to support       a fine-tuning job's model, through the gate
    loraflow scheduler                                           the nightly schedule, in the foreground
    loraflow demo [--retrieval]                                  the whole flywheel on two demo tenants (or grounding)
    loraflow base-model [NAME]                                   download, convert and check the base model now

Heavy imports (torch, transformers) happen inside the commands, so `loraflow --help` stays fast everywhere.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markdown import Markdown
from rich.table import Table

out = Console()
err = Console(stderr=True)

Url = Annotated[
    str | None, typer.Option("--url", help="Gateway URL (default: LORAFLOW_GATEWAY_URL, else the local gateway).")
]
Tenant = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]

train_app = typer.Typer(
    help="Retrain adapters from feedback: run a cycle now, list runs, show reports, upload golden sets.",
    no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    app.command("base-model")(base_model)
    app.add_typer(train_app, name="train")
    app.command("scheduler")(scheduler)
    app.command("demo")(demo)


def base_model(
    name: Annotated[
        str | None, typer.Argument(help="Default: LORAFLOW_BASE_MODEL, else smollm2-135m-instruct.")
    ] = None,
) -> None:
    """Make the base model ready now (download, convert, check; cached), as `loraflow up` does before it starts."""
    from trainer.base_model import prepare
    from trainer.preparation import PreparationError, RichStages
    from trainer.settings import load_settings

    settings = load_settings()
    try:
        with RichStages(out) as stages:
            path = prepare(name or settings.base_model, settings.var_dir, stages)
    except PreparationError as error:
        err.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    out.print(f"[green]✓[/] base model at {path}")


@train_app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant id.")] = None,
    adapter: Annotated[
        list[str] | None, typer.Option("--adapter", "-a", help="Adapter alias; default: the tenant's scheduled ones.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every tenant with a schedule, one after another.")] = False,
    force: Annotated[bool, typer.Option(help="Train even with too little new feedback.")] = False,
    url: Url = None,
) -> None:
    """Run the flywheel once now: data from the record, train, evaluate through the gateway, promote or reject."""
    if ctx.invoked_subcommand is not None:
        return
    if (tenant is None) == (not all_):
        err.print("Give [bold]--tenant T[/] (optionally with --adapter A) or [bold]--all[/].")
        raise typer.Exit(2)
    from trainer.cycle import Cycle
    from trainer.scheduler import wanted_jobs
    from trainer.watcher import RichWatcher

    _logging(logging.WARNING)
    _sigterm_is_interrupt()
    settings, client = _client(url)
    with client:
        scheduled, _ = wanted_jobs(client)
        if all_:
            targets = [(job.tenant, job.alias) for job in scheduled.values()]
        elif adapter:
            targets = [(str(tenant), alias) for alias in adapter]
        else:
            targets = [(job.tenant, job.alias) for job in scheduled.values() if job.tenant == tenant]
            targets = targets or [(str(tenant), alias["alias"]) for alias in client.adapters(str(tenant))]
        if not targets:
            err.print("Nothing to train: no adapter alias (create one, or give --adapter).")
            raise typer.Exit(1)
        failed = 0
        cycle = Cycle(settings, client)
        try:
            for tenant_id, alias in targets:
                with RichWatcher(f"{tenant_id}/{alias}", out) as watcher:
                    cycle.watcher = watcher
                    outcome = cycle.run(tenant_id, alias, trigger="manual", force=force)
                if outcome.report is not None:
                    out.print(Markdown(outcome.report.to_markdown()))
                else:
                    out.print(f"[yellow]{tenant_id}/{alias}: {outcome.status}[/] — {outcome.reason}")
                failed += outcome.status == "failed"
        finally:
            cycle.close()
    raise typer.Exit(1 if failed else 0)


@train_app.command("runs")
def runs(
    tenant: Tenant,
    adapter: Annotated[str | None, typer.Option("--adapter", "-a", help="Only this alias.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    url: Url = None,
) -> None:
    """List a tenant's training runs, newest first."""
    _, client = _client(url)
    with client:
        rows = _or_exit(lambda: client.runs(tenant, adapter=adapter, status=status, limit=limit))
    table = Table(title=f"Training runs of {tenant}", title_justify="left")
    for column in ("run", "adapter", "trigger", "status", "stage", "candidate", "started", "reason"):
        table.add_column(column, overflow="fold")
    colours = {"promoted": "green", "rejected": "yellow", "failed": "red", "running": "cyan", "held": "magenta",
               "canary": "blue"}  # fmt: skip
    for run in rows:
        colour = colours.get(run["status"], "dim")
        stage = run["stage"]
        progress = run.get("progress") or {}
        if run["status"] == "running" and progress.get("total_steps"):
            stage += f" {progress.get('step', 0)}/{progress['total_steps']}"
        table.add_row(
            run["id"],
            run["adapter"],
            run["trigger"],
            f"[{colour}]{run['status']}[/]",
            stage,
            run.get("candidate") or "",
            run["created_at"][:19].replace("T", " "),
            (run.get("reason") or "")[:160],
        )
    out.print(table)


@train_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The run id, e.g. run_0123abcd.")],
    tenant: Tenant,
    json_: Annotated[bool, typer.Option("--json", help="The report as JSON instead of markdown.")] = False,
    url: Url = None,
) -> None:
    """Print a run's report."""
    import json

    _, client = _client(url)
    with client:
        run = _or_exit(lambda: client.run(tenant, run_id))
    if json_:
        out.print_json(json.dumps(run.get("report") or {}))
    elif run.get("report_markdown"):
        out.print(Markdown(run["report_markdown"]))
    else:
        out.print(f"{run['id']}: {run['status']} ({run['stage']}) {run.get('reason') or ''}")


@train_app.command("approve")
def approve(
    run_id: Annotated[str, typer.Argument(help="A held run, e.g. run_0123abcd.")],
    tenant: Tenant,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    url: Url = None,
) -> None:
    """Promote the candidate of a run held for review (after reading its report: `loraflow train show`)."""
    _review(run_id, tenant, "approve", reason, url)


@train_app.command("reject")
def reject(
    run_id: Annotated[str, typer.Argument(help="A held run, e.g. run_0123abcd.")],
    tenant: Tenant,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    url: Url = None,
) -> None:
    """Retire the candidate of a run held for review; production stays as it is."""
    _review(run_id, tenant, "reject", reason, url)


def _review(run_id: str, tenant: str, verdict: str, reason: str, url: str | None) -> None:
    _, client = _client(url)
    with client:
        run = _or_exit(lambda: client.review(tenant, run_id, verdict, reason))
    colour = "green" if run["status"] == "promoted" else "yellow"
    out.print(f"[{colour}]{run['id']}: {run['status']}[/] — {run['reason']}")


@train_app.command("gate-job")
def gate_job(
    job_id: Annotated[str, typer.Argument(help="A succeeded fine-tuning job, e.g. ftjob-0123...")],
    tenant: Tenant,
    to: Annotated[str, typer.Option("--to", help="The alias that is to serve the job's model.")],
    url: Url = None,
) -> None:
    """Promote a fine-tuning job's model to an alias through the evaluation gate: staged as its next version,
    scored against production on the job's validation file and the golden set, then promoted, held or retired."""
    from trainer.fine_tuning_gate import gate_job as run_gate

    _logging(logging.WARNING)
    _, client = _client(url)
    with client:
        outcome = _or_exit(lambda: run_gate(client, tenant, job_id, to))
    colour = {"promote": "green", "hold": "yellow"}.get(outcome.decision.decision, "red")
    out.print(f"[{colour}]{outcome.decision.decision}[/] {outcome.candidate} against {outcome.incumbent}: "
              f"{outcome.decision.reason}")  # fmt: skip
    raise typer.Exit(0 if outcome.decision.decision == "promote" else 1)


@train_app.command("golden")
def golden(
    tenant: Tenant,
    adapter: Annotated[str, typer.Option("--adapter", "-a", help="The adapter alias it evaluates.")],
    file: Annotated[Path, typer.Argument(help="JSONL: one {input, expected, scorer} object per line.")],
    url: Url = None,
) -> None:
    """Upload (replace) an adapter's golden set: candidates must not regress on any of its items."""
    from trainer.scorers import ScorerError, load_golden

    try:
        items = load_golden(file)  # scorer names and patterns checked here: the gateway checks the shape only
    except (ScorerError, OSError) as error:
        err.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    _, client = _client(url)
    with client:
        count = _or_exit(lambda: client.put_golden(tenant, adapter, file.read_bytes()))
    scorers = sorted({item.scorer for item in items})
    out.print(f"[green]✓[/] golden set of {tenant}/{adapter}: {count} items ({', '.join(scorers)})")


def scheduler(url: Url = None) -> None:
    """Run the schedule in the foreground: a cron job per tenant and alias from tenant settings (Ctrl-C stops)."""
    from trainer import scheduler as schedule

    _logging(logging.INFO)
    _sigterm_is_interrupt()
    settings, client = _client(url)
    jobs = schedule.build(settings, client)
    out.print(
        f"[bold]loraflow scheduler[/] — gateway {client.url}, jobs in {settings.scheduler.table} "
        f"(synced every {settings.scheduler.sync_interval_s:.0f} s)"
    )
    try:
        jobs.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        schedule.STOPPING.set()  # a run in progress ends failed at its next step, leaving production as it is
        if jobs.running:
            jobs.shutdown(wait=True)
        client.close()
    out.print("[dim]scheduler stopped[/]")


def demo(
    url: Url = None,
    keep: Annotated[bool, typer.Option(help="Leave the gateway it started running at the end.")] = False,
    requests: Annotated[int, typer.Option(help="Requests each demo tenant's users send before the retrain.")] = 300,
    retrieval: Annotated[
        bool, typer.Option("--retrieval", help="The grounding demo instead: handbook questions with and without it.")
    ] = False,
) -> None:
    """The flywheel end to end on two demo tenants: users, ratings, the nightly retrain, before and after."""
    _logging(logging.WARNING)
    if retrieval:
        from trainer.demo_retrieval import run_retrieval_demo

        raise typer.Exit(run_retrieval_demo(url=url, keep=keep, console=out))
    from trainer.demo import run_demo

    raise typer.Exit(run_demo(url=url, keep=keep, requests=requests, console=out))


def _client(url: str | None):
    from trainer.gateway_client import GatewayClient
    from trainer.settings import load_settings

    overrides = {"gateway_url": url} if url else {}
    try:
        settings = load_settings(**overrides)
        key = settings.admin_secret()
    except (RuntimeError, ValueError) as error:
        err.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    return settings, GatewayClient(settings.url, key, timeout_s=settings.http_timeout_s)


def _or_exit(call):
    from trainer.gateway_client import GatewayError

    try:
        return call()
    except GatewayError as error:
        err.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None


def _logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False, console=err)])
    for noisy in ("httpx", "apscheduler", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _sigterm_is_interrupt() -> None:
    """`docker stop` and Kubernetes send SIGTERM: end like Ctrl-C, so a run in progress is marked failed at once."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
