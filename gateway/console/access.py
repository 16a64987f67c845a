"""Who is signed in to the console and what they may do: the session cookie, the same 404 as the API for another
tenant's anything, read-only tenant sessions, and the CSRF token every change must carry."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.console import sessions
from gateway.console.sessions import Viewer
from gateway.deps import GatewayDep
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.request_body import read_body
from gateway.state import Gateway

COOKIE = "lf_console"
SIGN_IN_COOKIE = "lf_console_sign_in"  # double-submit token of the sign-in form (no session exists yet)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 256 * 1024


class SignInRequired(Exception):
    """No valid session: the page answers with the sign-in form (a redirect), never with data."""


async def get_viewer(request: Request, gw: GatewayDep) -> Viewer:
    cookie = request.cookies.get(COOKIE)
    viewer = await run_in_threadpool(_find, gw, cookie) if cookie else None
    if viewer is None:
        raise SignInRequired()
    request.state.viewer = viewer  # for the error page's navigation
    return viewer


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def _find(gw: Gateway, cookie: str) -> Viewer | None:
    with gw.sessions() as session:
        return sessions.find(session, cookie)


def check_visible(viewer: Viewer, tenant_id: str) -> None:
    """Another tenant's page is not found, in the words the API uses for a tenant that does not exist."""
    if not viewer.sees(tenant_id):
        raise NotFound(f"No tenant `{tenant_id}`.", param="tenant")


def check_changeable(viewer: Viewer, tenant_id: str) -> None:
    check_visible(viewer, tenant_id)
    if not viewer.may_change(tenant_id):
        raise Forbidden("This session is read-only: sign in with the admin key or a tenant-admin key to change it.")


async def read_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """A urlencoded form's fields, once its CSRF token matches the session's (403 otherwise, nothing changed)."""
    fields: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = await read_body(request, MAX_FORM_BYTES)
        try:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise BadRequest("The form is not UTF-8.") from None
    check_csrf(viewer, fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    return fields


def check_csrf(viewer: Viewer, presented: str | None) -> None:
    if not presented or not secrets.compare_digest(presented.encode(), viewer.csrf_token.encode()):
        raise Forbidden("The form's CSRF token is missing or wrong: reload the page and try again.", code="csrf_failed")


def set_session_cookie(response: Response, request: Request, cookie: str, max_age_s: float) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (a link from elsewhere opens the page signed in, a form posted
    from elsewhere carries no cookie), Secure when the page was served over TLS."""
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(max_age_s),
        path="/console",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="lax", secure=request.url.scheme == "https")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page of this site, never another site."""
    if target and target.startswith("/console") and not target.startswith("/console/sign-") and "//" not in target:
        return target
    return "/console/"
