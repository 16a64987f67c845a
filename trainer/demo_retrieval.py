"""`loraflow demo --retrieval`: answers grounded in a tenant's handbook, against the same model's answers without it.

A gateway with retrieval on (or `--url`), a tenant whose handbook (trainer/demo_handbook.py) holds facts no model can
know, and 24 questions asked twice through the gateway with the `openai` client: grounded (`"retrieval": {"top_k":
2}`) and not. An answer is right when it holds the handbook's phrase; both rates are printed, with every answer.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from trainer.demo_gateway import BASE_MODEL, DemoGateway
from trainer.demo_handbook import DOCUMENTS, QUESTIONS, Question
from trainer.gateway_client import GatewayClient
from trainer.settings import load_settings

DEMO_DIR = Path("var/demo")
TENANT = "demo-handbook"
TOP_K = 2


def run_retrieval_demo(*, url: str | None, keep: bool, console: Console) -> int:
    began = time.perf_counter()
    if not console.is_terminal:
        console.width = max(console.width, 120)
    gateway = None if url else DemoGateway.start(DEMO_DIR, console, retrieval=True)
    try:
        if gateway is None:
            gateway_url, admin_key = str(url), load_settings(gateway_url=url).admin_secret()
        else:
            gateway_url, admin_key = gateway.url, gateway.admin_key
        console.print(f"[green]✓[/] gateway at {gateway_url} ({time.perf_counter() - began:.0f} s)")
        with GatewayClient(gateway_url, admin_key) as admin:
            if not any(t["id"] == TENANT for t in admin.tenants()):
                admin.create_tenant(TENANT)
            key = admin.create_key(TENANT, "handbook demo")[1]
        upload(gateway_url, admin_key, console)

        client = GatewayClient(gateway_url, admin_key).openai(key)
        model = client.models.list().data[0].id  # the base model's public name

        def ask(question: Question, grounded: bool) -> str:
            reply = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": question.text}],
                temperature=0,
                max_tokens=48,
                extra_body={"retrieval": {"top_k": TOP_K}} if grounded else None,
            )
            return reply.choices[0].message.content or ""

        asking = console.status(f"Asking {len(QUESTIONS)} questions, with and without the handbook…")
        with asking, ThreadPoolExecutor(8) as pool:
            grounded = list(pool.map(lambda q: ask(q, True), QUESTIONS))
            plain = list(pool.map(lambda q: ask(q, False), QUESTIONS))
        client.close()

        console.print(answers_table(grounded, plain))
        right_grounded = sum(q.answered_by(a) for q, a in zip(QUESTIONS, grounded, strict=True))
        right_plain = sum(q.answered_by(a) for q, a in zip(QUESTIONS, plain, strict=True))
        n = len(QUESTIONS)
        console.print(
            f"[bold]Right answers ({model}):[/] grounded in the handbook [green]{right_grounded}/{n} "
            f"({right_grounded / n:.0%})[/], without it [red]{right_plain}/{n} ({right_plain / n:.0%})[/]"
        )
        console.print(f"[bold]Wall time: {time.perf_counter() - began:.0f} s[/]")
        return 0 if right_grounded > right_plain else 1
    finally:
        if gateway is not None:
            gateway.finish(keep=keep, console=console)


def upload(url: str, admin_key: str, console: Console) -> None:
    """The handbook, one file per topic, as `loraflow docs add --tenant demo-handbook ./handbook` would send it."""
    files = [("file", (name, text.encode(), "text/markdown")) for name, text in DOCUMENTS.items()]
    response = httpx.post(
        f"{url}/admin/tenants/{TENANT}/documents",
        files=files,
        data={"replace": "true"},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=300,
    )
    response.raise_for_status()
    chunks = sum(document["chunk_count"] for document in response.json()["data"])
    console.print(f"[green]✓[/] handbook uploaded: {len(DOCUMENTS)} files, {chunks} chunks")


def answers_table(grounded: list[str], plain: list[str]) -> Table:
    table = Table(title=f"{BASE_MODEL}: the handbook's questions, without and with retrieval", title_justify="left")
    for column in ("question", "in the handbook", "without retrieval", f"grounded (top_k={TOP_K})"):
        table.add_column(column, overflow="fold")
    for question, with_docs, without in zip(QUESTIONS, grounded, plain, strict=True):
        table.add_row(
            question.text,
            question.expect,
            _marked(question, without),
            _marked(question, with_docs),
        )
    return table


def _marked(question: Question, answer: str) -> str:
    text = " ".join(answer.split())[:100]
    return f"[green]✓[/] {text}" if question.answered_by(answer) else f"[red]✗[/] {text}"
