"""The admin API over HTTP, for the CLI: every admin command goes through the running gateway, which owns the
engines (a promotion must load and unload adapters there), so there is one way to do each thing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

from gateway.settings import Settings, load_settings

err = Console(stderr=True)


def gateway_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return os.environ.get("LORAFLOW_GATEWAY_URL") or f"http://{host}:{settings.port}"


def admin_key(settings: Settings) -> str:
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value()
    dev_key = settings.var_dir / "admin-key"
    if dev_key.is_file():
        return dev_key.read_text().strip()
    err.print("[red]No admin key:[/] set LORAFLOW_ADMIN_KEY (or run `loraflow up` once to make a development key).")
    raise typer.Exit(2)


class AdminClient:
    def __init__(self, url: str | None = None, key: str | None = None) -> None:
        settings = load_settings()
        self.url = (url or gateway_url(settings)).rstrip("/")
        self._http = httpx.Client(
            base_url=f"{self.url}/admin", headers={"Authorization": f"Bearer {key or admin_key(settings)}"}, timeout=300
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            self.unreachable()
        self.fail_on_error(response)
        return response.json()

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (a large export), with the same error handling as `call`."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                self.fail_on_error(response)
                yield response
        except httpx.ConnectError:
            self.unreachable()

    def fail_on_error(self, response: httpx.Response) -> None:
        """An error answer from the gateway: its message on stderr, then exit 1."""
        if response.status_code < 400:
            return
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        err.print(f"[red]Error {response.status_code}:[/] {message}")
        raise typer.Exit(1)

    def unreachable(self) -> NoReturn:
        err.print(f"[red]Cannot reach the gateway at {self.url}.[/] Is `loraflow up` running? (LORAFLOW_GATEWAY_URL)")
        raise typer.Exit(1) from None

    def upload(self, path: str, archive: Path, lineage: str) -> Any:
        with archive.open("rb") as handle:
            return self.call(
                "POST", path, files={"file": (archive.name, handle, "application/gzip")}, data={"lineage": lineage}
            )
