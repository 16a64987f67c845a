"""Pages from Jinja2 templates shipped with the package, the headers every page carries, and errors as HTML pages
(the same errors, classes and statuses as the API's, from gateway/errors.py)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import Response

from feedback.errors import RecordError
from gateway.console.access import SignInRequired
from gateway.console.plots.axes import number, percent
from gateway.errors import GatewayError, part_error, validation_error
from retrieval.errors import RetrievalError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
# Pages show a tenant's data: never cached, never framed; scripts and styles only from here (no CDN, no inline).
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


def _static_version() -> str:
    """A hash of the shipped static files, appended to their URLs so a new release is never served from cache."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _rate(value: float | None) -> str:
    return "-" if value is None else percent(value)


def _model_name(value: str | None) -> str:
    """A base model as a person knows it (`SmolLM2-135M-Instruct`), never the path it was loaded from."""
    return (value or "-").rstrip("/").rsplit("/", 1)[-1]


def _setting(value: object) -> str:
    """A setting's value as a person writes it: `q_proj, v_proj`, `true`, `-` for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a missing value is a bug found by the tests, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(
    when=_when, rate=_rate, number=number, seconds=_seconds, model_name=_model_name, setting=_setting
)
templates.globals["static_version"] = _static_version()


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    page = templates.get_template(name).render(request=request, path=request.url.path, **context)
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def error_page(request: Request, error: GatewayError) -> HTMLResponse:
    viewer = getattr(request.state, "viewer", None)
    context = {"viewer": viewer, "error": error, "title": _titles.get(error.status, "Error")}
    return render(request, "error.html", context, status=error.status)


_titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict", 413: "Too large"}


class ConsoleRoute(APIRoute):
    """Console routes answer errors with an HTML page (same status and message as the API), and a missing or
    expired session with the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET":
                    target = "/console/"
                return RedirectResponse(f"/console/sign-in?next={quote(target, safe='')}", status_code=303)
            except GatewayError as exc:
                return error_page(request, exc)
            except (RecordError, RetrievalError) as exc:
                return error_page(request, part_error(exc))
            except RequestValidationError as exc:
                return error_page(request, validation_error(exc.errors()))

        return run
