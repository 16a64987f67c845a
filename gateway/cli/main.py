"""The `loraflow` command. Commands from other parts (the trainer's) join through the `loraflow.commands`
entry-point group, so the gateway never imports them and a gateway-only install simply lacks them."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer
from rich.console import Console

from gateway.cli import admin
from gateway.cli.docs import docs  # retrieval: a tenant's documents
from gateway.cli.feedback import feedback  # the record: export, stats, list, forget
from gateway.cli.fine_tuning import fine_tuning  # OpenAI's fine-tuning jobs
from gateway.cli.up import up
from gateway.settings import load_settings

app = typer.Typer(
    name="loraflow",
    help="An OpenAI-compatible gateway for many LoRA adapters on vLLM, with a feedback loop.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
app.command()(up)
app.add_typer(admin.tenants, name="tenants")
app.add_typer(admin.keys, name="keys")
app.add_typer(admin.adapters, name="adapters")
app.add_typer(feedback, name="feedback")
app.add_typer(docs, name="docs")  # retrieval
app.add_typer(fine_tuning, name="fine-tuning")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (the gateway also does this when it starts)."""
    from gateway.store.db import make_engine
    from gateway.store.db import migrate as apply

    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    apply(engine)
    engine.dispose()
    Console().print(f"[green]✓[/] schema up to date ({engine.url.render_as_string(hide_password=True)})")


for entry_point in entry_points(group="loraflow.commands"):
    entry_point.load()(app)


def main() -> None:
    app()
