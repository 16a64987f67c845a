"""`loraflow up`: the gateway in front of a supervised vLLM engine (or attached to running ones)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import subprocess
import sys
import threading
import time
from importlib.metadata import entry_points
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.logging import RichHandler

from gateway import keys, tenants
from gateway.app import create_app
from gateway.child_process import ChildProcess
from gateway.cli.banner import DEMO_TENANT, print_banner
from gateway.cli.client import gateway_url
from gateway.dev_keys import with_dev_keys
from gateway.server import SQLITE_MAX_WORKERS, TooManyWorkers, check_workers, serve
from gateway.settings import Settings, load_settings
from gateway.store.db import make_engine, make_sessions, migrate

out = Console()


def up(
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1; LORAFLOW_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8000; LORAFLOW_PORT).")] = None,
    engine_url: Annotated[
        list[str] | None,
        typer.Option("--engine-url", help="Attach to this running vLLM instead of starting one; repeat for several."),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            help="smollm2-135m-instruct (default), tiny-random, a .gguf file, or a Hugging Face id or directory."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            envvar="LORAFLOW_WORKERS",
            help=f"Gateway processes on the one port, one a core (LORAFLOW_WORKERS). With SQLite at most "
            f"{SQLITE_MAX_WORKERS}; with PostgreSQL any.",
        ),
    ] = 1,
) -> None:
    """Start the gateway (and, unless --engine-url is given, a vLLM engine it supervises)."""
    overrides: dict[str, object] = {
        k: v for k, v in {"host": host, "port": port, "base_model": base_model}.items() if v
    }
    if engine_url:
        overrides["engine"] = {"urls": engine_url}
    settings = with_dev_keys(load_settings(**overrides))
    try:
        check_workers(settings, workers)
    except TooManyWorkers as refused:
        out.print(f"[red]{refused}[/]")
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if settings.managed_engine:
        _require_engine()
        if settings.base_model_needs_preparation:
            _prepare_base_model(settings)
    demo_key = _demo_key(settings) if settings.env == "development" else None
    scheduler = _start_scheduler(settings) if settings.training.run_scheduler and _trainer_installed() else None
    print_banner(out, settings, demo_key, scheduler.log_path if scheduler else None)
    threading.Thread(target=_announce_ready, args=(gateway_url(settings), settings), daemon=True).start()
    try:
        # uvicorn re-raises Ctrl-C after its graceful shutdown (which stopped the engine): nothing left to do.
        with contextlib.suppress(KeyboardInterrupt):
            serve(settings, create_app, workers)
    finally:
        if scheduler is not None:
            scheduler.stop()
    out.print("[dim]loraflow stopped, and everything it started.[/]")


def _trainer_installed() -> bool:
    return importlib.util.find_spec("apscheduler") is not None and any(
        entry.name == "trainer" for entry in entry_points(group="loraflow.commands")
    )


def _start_scheduler(settings: Settings) -> ChildProcess:
    """The trainer's scheduler as a supervised child: it reaches this gateway over HTTP, like from anywhere else."""
    assert settings.admin_key is not None
    env = {
        **os.environ,
        "LORAFLOW_GATEWAY_URL": gateway_url(settings),
        "LORAFLOW_ADMIN_KEY": settings.admin_key.get_secret_value(),
        "LORAFLOW_DATABASE_URL": settings.sqlalchemy_url,
        "LORAFLOW_VAR_DIR": str(settings.var_dir),
    }
    child = ChildProcess(
        "scheduler",
        [sys.executable, "-m", "gateway.cli", "scheduler"],
        env,
        settings.var_dir / "logs" / "scheduler.log",
    )
    threading.Thread(target=asyncio.run, args=(child.supervise(),), daemon=True, name="scheduler-supervisor").start()
    return child


def _require_engine() -> None:
    if importlib.util.find_spec("vllm") is None:
        out.print(
            "[red]vLLM is not installed.[/] `make run` installs it; or `pip install 'loraflow[engine-cpu]'` "
            "(no GPU) / `'loraflow[engine-cuda]'`; or attach to a running engine with --engine-url."
        )
        raise typer.Exit(2)


def _prepare_base_model(settings: Settings) -> None:
    """Download, convert and check the base model once (then found in var/models), with the trainer's code in a
    child process: the gateway never imports the trainer (DESIGN.md). Its progress display is the user's terminal."""
    if importlib.util.find_spec("trainer") is None or importlib.util.find_spec("transformers") is None:
        out.print(
            f"[red]The base model {settings.base_model!r} must be prepared, which needs the trainer:[/] "
            "`pip install 'loraflow[trainer]'`; or point LORAFLOW_BASE_MODEL at a Hugging Face model directory."
        )
        raise typer.Exit(2)
    command = [sys.executable, "-m", "trainer.base_model", settings.base_model, "--var-dir", str(settings.var_dir)]
    if subprocess.run(command).returncode != 0:
        out.print(f"[red]Could not prepare the base model {settings.base_model!r}[/] (the reason is above).")
        raise typer.Exit(1)


def _demo_key(settings: Settings) -> str:
    """A demo tenant and its key, kept in var/demo-key (development only) so every `up` can show it."""
    db = make_engine(settings.sqlalchemy_url)
    migrate(db)
    key_file = settings.var_dir / "demo-key"
    try:
        with make_sessions(db)() as session:
            if session.get(tenants.Tenant, DEMO_TENANT) is None:
                tenants.create_tenant(session, DEMO_TENANT, "Demo tenant")
            if key_file.is_file():
                key = key_file.read_text().strip()
                if tenants.find_active_key(session, keys.hash_key(key)) is not None:
                    return key
            _, key = tenants.create_key(session, DEMO_TENANT, name="demo key (loraflow up)")
    finally:
        db.dispose()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    return key


def _announce_ready(url: str, settings: Settings) -> None:
    started = time.monotonic()
    deadline = started + settings.engine.start_timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                out.print(f"[green]✓ ready[/] after {time.monotonic() - started:.0f} s — {url}/v1")
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    out.print(f"[red]Not ready after {settings.engine.start_timeout_s:.0f} s[/]; see {settings.var_dir / 'logs'}")
