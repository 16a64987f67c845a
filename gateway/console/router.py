"""Routes of the console, under /console. Thin: each page is built by `pages/` in a worker thread and rendered from
a template; each change goes through the same service the admin API uses, after the session may make it and the
form's CSRF token matches. Every tenant route answers another tenant's id as the API does: 404."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.responses import Response

from gateway import tenants
from gateway.console import sessions, settings_form
from gateway.console.access import (
    COOKIE,
    CSRF_HEADER,
    SIGN_IN_COOKIE,
    ViewerDep,
    check_changeable,
    check_csrf,
    check_visible,
    clear_session_cookie,
    read_form,
    safe_next,
    set_session_cookie,
)
from gateway.console.pages.adapter import adapter_page, change_preview
from gateway.console.pages.documents import documents_page
from gateway.console.pages.interactions import interaction_page, interactions_page
from gateway.console.pages.overview import overview
from gateway.console.pages.run import live_status, run_page
from gateway.console.pages.tenant import tenant_page
from gateway.console.rendering import HEADERS, STATIC, ConsoleRoute, render
from gateway.console.sessions import Viewer
from gateway.deps import GatewayDep
from gateway.documents_api.protocol import Document
from gateway.documents_api.uploads import read_uploads
from gateway.errors import BadRequest, NotFound
from gateway.request_body import read_body
from gateway.retrieval_service import require
from gateway.state import Gateway
from gateway.training_api import runs
from gateway.training_api.review import Verdict, review

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
VERDICTS: dict[str, Verdict] = {"approve": "approve", "reject": "reject"}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


# Signing in and out.


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str = "/console/") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", {"viewer": None, "next": safe_next(next), "token": token, "error": ""})
    response.set_cookie(SIGN_IN_COOKIE, token, max_age=3600, path="/console/sign-in", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.post("/sign-in")
async def sign_in(request: Request, gw: GatewayDep) -> Response:
    """The key comes in the form body only: never in a URL, never in a page, never logged."""
    fields = _urlencoded(await read_body(request, 16 * 1024))
    token, expected = fields.get("token", ""), request.cookies.get(SIGN_IN_COOKIE, "")
    target = safe_next(fields.get("next"))
    if not expected or not secrets.compare_digest(token.encode(), expected.encode()):
        return _sign_in_again(request, target, "The sign-in form expired; try again.", 403)
    admin_key = gw.settings.admin_key.get_secret_value() if gw.settings.admin_key else None
    ttl_s = gw.settings.console.session_ttl_s
    made = await run_in_threadpool(_sign_in, gw, fields.get("key", ""), admin_key, ttl_s)
    if made is None:
        return _sign_in_again(request, target, "That key is not valid (or it was revoked).", 401)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, made, ttl_s)
    response.delete_cookie(SIGN_IN_COOKIE, path="/console/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, viewer: ViewerDep, gw: GatewayDep) -> Response:
    await read_form(request, viewer)
    cookie = request.cookies.get(COOKIE, "")
    await run_in_threadpool(_write, gw, sessions.sign_out, cookie)
    response = RedirectResponse("/console/sign-in", status_code=303)
    clear_session_cookie(response, request)
    return response


# Pages.


@router.get("/")
async def overview_page(request: Request, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    context = await run_in_threadpool(overview, gw, viewer)
    return render(request, "overview.html", {"viewer": viewer, **context})


@router.get("/tenants/{tenant_id}")
async def tenant(request: Request, tenant_id: str, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    check_visible(viewer, tenant_id)
    context = await run_in_threadpool(tenant_page, gw, viewer, tenant_id)
    return render(request, "tenant.html", {"viewer": viewer, "created_key": None, **context})


@router.post("/tenants/{tenant_id}/keys")
async def create_key(request: Request, tenant_id: str, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    """The new key is in this response's page, once (not cached); it is never shown again."""
    check_changeable(viewer, tenant_id)
    fields = await read_form(request, viewer)
    name = fields.get("name", "").strip()[:200]
    row, secret = await run_in_threadpool(
        _write, gw, tenants.create_key, tenant_id, name, None, None, tenant_admin=fields.get("tenant_admin") == "on"
    )
    return render(request, "key_created.html", {"viewer": viewer, "tenant_id": tenant_id, "key": row, "secret": secret})


@router.post("/tenants/{tenant_id}/keys/{key_id}/revoke")
async def revoke_key(request: Request, tenant_id: str, key_id: str, viewer: ViewerDep, gw: GatewayDep) -> Response:
    check_changeable(viewer, tenant_id)
    await read_form(request, viewer)
    await run_in_threadpool(_write, gw, tenants.revoke_key, tenant_id, key_id)
    gw.keys.forget(key_id)
    return _back(f"/console/tenants/{tenant_id}", done="revoked", anchor="keys")


@router.get("/tenants/{tenant_id}/settings")
async def settings_page(request: Request, tenant_id: str, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    row = await _tenant(gw, viewer, tenant_id)
    context = {"viewer": viewer, "tenant": row, "sections": settings_form.sections(row.settings), "error": None}
    return render(request, "settings.html", context)


@router.post("/tenants/{tenant_id}/settings")
async def save_settings(request: Request, tenant_id: str, viewer: ViewerDep, gw: GatewayDep) -> Response:
    check_changeable(viewer, tenant_id)
    fields = await read_form(request, viewer)
    row = await _tenant(gw, viewer, tenant_id)
    changes, filled = settings_form.read(fields, row.settings)
    try:
        await run_in_threadpool(settings_form.check, changes, filled)
    except BadRequest as exc:  # the form again, as submitted, each error by its field; nothing stored
        context = {"viewer": viewer, "tenant": row, "sections": filled, "error": exc}
        return render(request, "settings.html", context, status=400)
    await run_in_threadpool(_write, gw, tenants.update_tenant_settings, tenant_id, changes)
    return _back(f"/console/tenants/{tenant_id}/settings", done="saved")


@router.get("/tenants/{tenant_id}/adapters/{alias}")
async def adapter(request: Request, tenant_id: str, alias: str, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    check_visible(viewer, tenant_id)
    context = await run_in_threadpool(adapter_page, gw, viewer, tenant_id, alias)
    return render(request, "adapter.html", {"viewer": viewer, "tenant_id": tenant_id, **context})


@router.get("/tenants/{tenant_id}/adapters/{alias}/promote")
async def confirm_promote(
    request: Request, tenant_id: str, alias: str, viewer: ViewerDep, gw: GatewayDep, version: int = 0
) -> HTMLResponse:
    check_changeable(viewer, tenant_id)
    preview = await run_in_threadpool(change_preview, gw, tenant_id, alias, version)
    return render(request, "confirm.html", {"viewer": viewer, "tenant_id": tenant_id, **preview})


@router.post("/tenants/{tenant_id}/adapters/{alias}/promote")
async def promote(request: Request, tenant_id: str, alias: str, viewer: ViewerDep, gw: GatewayDep) -> Response:
    check_changeable(viewer, tenant_id)
    fields = await read_form(request, viewer)
    number = fields.get("version", "")
    if not number.isdigit():
        raise BadRequest("Choose the version to promote.", param="version")
    reason = fields.get("reason", "").strip()[:1000] or "promoted from the console"
    await gw.adapters.promote(tenant_id, alias, int(number), reason)
    return _back(f"/console/tenants/{tenant_id}/adapters/{alias}", done="promote")


@router.get("/tenants/{tenant_id}/adapters/{alias}/rollback")
async def confirm_rollback(
    request: Request, tenant_id: str, alias: str, viewer: ViewerDep, gw: GatewayDep
) -> HTMLResponse:
    check_changeable(viewer, tenant_id)
    preview = await run_in_threadpool(change_preview, gw, tenant_id, alias, None)
    return render(request, "confirm.html", {"viewer": viewer, "tenant_id": tenant_id, **preview})


@router.post("/tenants/{tenant_id}/adapters/{alias}/rollback")
async def rollback(request: Request, tenant_id: str, alias: str, viewer: ViewerDep, gw: GatewayDep) -> Response:
    check_changeable(viewer, tenant_id)
    fields = await read_form(request, viewer)
    reason = fields.get("reason", "").strip()[:1000] or "rolled back from the console"
    await gw.adapters.rollback(tenant_id, alias, reason)
    return _back(f"/console/tenants/{tenant_id}/adapters/{alias}", done="rollback")


@router.get("/tenants/{tenant_id}/runs/{run_id}")
async def run(request: Request, tenant_id: str, run_id: str, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    await _tenant(gw, viewer, tenant_id)
    context = await run_in_threadpool(run_page, gw, tenant_id, run_id)
    return render(request, "run.html", {"viewer": viewer, "tenant_id": tenant_id, **context})


@router.post("/tenants/{tenant_id}/runs/{run_id}/review")
async def review_run(request: Request, tenant_id: str, run_id: str, viewer: ViewerDep, gw: GatewayDep) -> Response:
    """A person's verdict on a candidate the gate held for review: the training API's own review."""
    check_changeable(viewer, tenant_id)
    fields = await read_form(request, viewer)
    verdict: Verdict | None = VERDICTS.get(fields.get("verdict", ""))
    if verdict is None:
        raise BadRequest("Choose approve or reject.", param="verdict")
    await review(gw, tenant_id, run_id, verdict, fields.get("reason", "").strip()[:1000])
    return _back(f"/console/tenants/{tenant_id}/runs/{run_id}", done=verdict)


@router.get("/tenants/{tenant_id}/runs/{run_id}/status.json")
async def run_status(tenant_id: str, run_id: str, viewer: ViewerDep, gw: GatewayDep) -> JSONResponse:
    """What the run page polls while the run goes on."""
    await _tenant(gw, viewer, tenant_id)
    status = await run_in_threadpool(_run_status, gw, tenant_id, run_id)
    return JSONResponse(status, headers={"Cache-Control": "no-store"})


@router.get("/tenants/{tenant_id}/interactions")
async def interactions(request: Request, tenant_id: str, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    await _tenant(gw, viewer, tenant_id)
    context = await run_in_threadpool(interactions_page, gw, tenant_id, dict(request.query_params))
    return render(request, "interactions.html", {"viewer": viewer, "tenant_id": tenant_id, **context})


@router.get("/tenants/{tenant_id}/interactions/{interaction_id}")
async def interaction(
    request: Request, tenant_id: str, interaction_id: str, viewer: ViewerDep, gw: GatewayDep
) -> HTMLResponse:
    await _tenant(gw, viewer, tenant_id)
    context = await run_in_threadpool(interaction_page, gw, tenant_id, interaction_id)
    return render(request, "interaction.html", {"viewer": viewer, "tenant_id": tenant_id, **context})


@router.get("/tenants/{tenant_id}/documents")
async def documents(request: Request, tenant_id: str, viewer: ViewerDep, gw: GatewayDep) -> HTMLResponse:
    await _tenant(gw, viewer, tenant_id)
    context = await run_in_threadpool(documents_page, gw, tenant_id)
    return render(request, "documents.html", {"viewer": viewer, "tenant_id": tenant_id, **context})


@router.post("/tenants/{tenant_id}/documents")
async def upload_documents(request: Request, tenant_id: str, viewer: ViewerDep, gw: GatewayDep) -> JSONResponse:
    """The page's upload (a script, for its progress bar): multipart as the documents API takes it, the CSRF token
    in a header. Answers JSON: what was stored, or the error."""
    check_changeable(viewer, tenant_id)
    check_csrf(viewer, request.headers.get(CSRF_HEADER))
    service = require(gw)
    await _tenant(gw, viewer, tenant_id)
    uploads, replace = await read_uploads(request, service.settings)
    stored = await run_in_threadpool(service.add_documents, tenant_id, uploads, replace=replace)
    return JSONResponse({"data": [Document.of(info).model_dump(mode="json") for info in stored]}, status_code=201)


@router.post("/tenants/{tenant_id}/documents/{document_id}/delete")
async def delete_document(
    request: Request, tenant_id: str, document_id: str, viewer: ViewerDep, gw: GatewayDep
) -> Response:
    check_changeable(viewer, tenant_id)
    await read_form(request, viewer)
    service = require(gw)
    await _tenant(gw, viewer, tenant_id)
    await run_in_threadpool(service.delete_document, tenant_id, document_id)
    return _back(f"/console/tenants/{tenant_id}/documents", done="deleted")


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The console's own scripts and styles (shipped with the package; no CDN)."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in STATIC_TYPES:
        raise NotFound(f"No file `{name}`.")
    # Cached for a day: pages ask for them with a hash of their content in the query (`static_version`).
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers=headers)


# Helpers.


async def _tenant(gw: Gateway, viewer: Viewer, tenant_id: str) -> Any:
    check_visible(viewer, tenant_id)
    return await run_in_threadpool(_write, gw, tenants.get_tenant, tenant_id)


def _write(gw: Gateway, func: Any, *args: Any, **kwargs: Any) -> Any:
    with gw.sessions() as session:
        return func(session, *args, **kwargs)


def _sign_in(gw: Gateway, key: str, admin_key: str | None, ttl_s: float) -> str | None:
    with gw.sessions() as session:
        made = sessions.sign_in(session, key, admin_key, ttl_s)
    return made[0] if made else None


def _run_status(gw: Gateway, tenant_id: str, run_id: str) -> dict[str, Any]:
    with gw.sessions() as session:
        runs.expire_lost(session, gw.settings.training.lease_s, tenant_id)
        return live_status(runs.get_run(session, tenant_id, run_id))


def _sign_in_again(request: Request, target: str, error: str, status: int) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", {"viewer": None, "next": target, "token": token, "error": error},
                      status=status)  # fmt: skip
    response.set_cookie(SIGN_IN_COOKIE, token, max_age=3600, path="/console/sign-in", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
    return response


def _urlencoded(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("The form is not UTF-8.") from None


def _back(path: str, *, done: str, anchor: str = "") -> RedirectResponse:
    """After a change, back to the page it was made on (post/redirect/get), saying what was done."""
    response = RedirectResponse(f"{path}?{urlencode({'done': done})}" + (f"#{anchor}" if anchor else ""), 303)
    response.headers.update({"Cache-Control": HEADERS["Cache-Control"]})
    return response
