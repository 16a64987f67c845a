"""What `loraflow up` prints at start: where things are, the demo key, and an `openai` snippet to paste.

Everything must survive being copied from an 80-column terminal: the key sits alone on its line, and the snippet's
lines are short, since a terminal crops code (it does not wrap it) and a cropped key is a wrong key.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from gateway.cli.client import gateway_url
from gateway.settings import Settings

DEMO_TENANT = "demo"
QUESTION = "What is the capital of France?"


def print_banner(console: Console, settings: Settings, demo_key: str | None, scheduler_log: Path | None) -> None:
    url = gateway_url(settings)
    engine = f"vLLM, log: {settings.var_dir / 'logs' / 'engine.log'}"
    if not settings.managed_engine:
        engine = "attached to " + ", ".join(settings.engine.urls)
    lines = [
        f"[bold]Gateway[/]     {url}/v1",
        f"[bold]Base model[/]  {settings.public_model_name}",
        f"[bold]Engine[/]      {engine}",
        f"[bold]Admin key[/]   {_admin_key_place(settings)}",
    ]
    if scheduler_log is not None:
        lines.append(f"[bold]Scheduler[/]   retrains on each tenant's schedule, log: {scheduler_log}")
    console.print(Panel("\n".join(lines), title="loraflow", subtitle="Ctrl-C stops everything", expand=False))
    if demo_key:
        console.print(f"[bold]Demo key[/] (tenant '{DEMO_TENANT}'; also in {settings.var_dir / 'demo-key'}):")
        console.print(demo_key, soft_wrap=True, highlight=False)
    console.print(Syntax(snippet(url, demo_key, settings.public_model_name), "python", theme="ansi_dark",
                         background_color="default"))  # fmt: skip


def snippet(url: str, key: str | None, model: str) -> str:
    return (
        "from openai import OpenAI\n\n"
        "client = OpenAI(\n"
        f'    base_url="{url}/v1",\n'
        f'    api_key="{key or "<your key>"}",\n'
        ")\n"
        "reply = client.chat.completions.create(\n"
        f'    model="{model}",\n'
        f'    messages=[{{"role": "user", "content": "{QUESTION}"}}],\n'
        "    temperature=0,  # the model's most likely answer, every time\n"
        ")\n"
        "print(reply.choices[0].message.content)"
    )


def _admin_key_place(settings: Settings) -> str:
    if settings.env == "development" and not os.environ.get("LORAFLOW_ADMIN_KEY"):
        return str(settings.var_dir / "admin-key")
    return "LORAFLOW_ADMIN_KEY"
