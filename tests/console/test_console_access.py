"""Who may see and change what in the console, route by route: anonymous (sent to sign in, shown nothing), the admin
key (every tenant), a tenant's key (its tenant alone, read-only), a tenant-admin key (may change its tenant); another
tenant's anything is the API's 404; every change needs the session's CSRF token; sessions end for real."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import update

from gateway.store.models import ConsoleSession
from tests.console.conftest import ADMIN, World
from tests.console.support import Session, sign_in

PAGES = [
    "/console/",
    "/console/tenants/{t}",
    "/console/tenants/{t}/settings",
    "/console/tenants/{t}/adapters/support",
    "/console/tenants/{t}/runs/{run}",
    "/console/tenants/{t}/runs/{run}/status.json",
    "/console/tenants/{t}/interactions",
    "/console/tenants/{t}/interactions/{completion}",
    "/console/tenants/{t}/documents",
]
TENANT_PAGES = [page for page in PAGES if "{t}" in page]
CONFIRMS = ["/console/tenants/{t}/adapters/support/promote?version=2", "/console/tenants/{t}/adapters/support/rollback"]
CHANGES = [
    ("/console/tenants/{t}/keys", {"name": "new"}),
    ("/console/tenants/{t}/keys/{key}/revoke", {}),
    ("/console/tenants/{t}/settings", {"min_new_ratings": "5"}),
    ("/console/tenants/{t}/adapters/support/promote", {"version": "2"}),
    ("/console/tenants/{t}/adapters/support/rollback", {}),
    ("/console/tenants/{t}/documents/doc_x/delete", {}),
    ("/console/tenants/{t}/runs/{run}/review", {"verdict": "reject"}),
]


def url(template: str, world: World, tenant: str = "acme") -> str:
    key = key_id(world, tenant) if "{key}" in template else ""
    return template.format(t=tenant, run=world.run_id, completion=world.completion_id, key=key)


def key_id(world: World, tenant: str) -> str:
    return world.env.admin("GET", f"/tenants/{tenant}/keys").json()[0]["id"]


def production(world: World) -> str:
    return world.env.admin("GET", "/tenants/acme/adapters/support").json()["production"]


def state(world: World) -> tuple:
    """What a change could touch: keys, settings, the alias."""
    keys = world.env.admin("GET", "/tenants/acme/keys").json()
    settings = world.env.admin("GET", "/tenants/acme").json()["settings"]
    return ([(k["id"], k["revoked_at"]) for k in keys], settings, production(world))


@pytest.mark.parametrize("page", PAGES + CONFIRMS)
def test_anonymous_is_sent_to_sign_in_and_shown_nothing(world, page):
    response = Session(world.client, None).get(url(page, world))
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in?next=")
    assert "acme" not in response.text


@pytest.mark.parametrize(("change", "data"), CHANGES)
def test_anonymous_changes_nothing(world, change, data):
    before = state(world)
    response = Session(world.client, None).post(url(change, world), data)
    assert response.status_code == 303 and response.headers["location"].startswith("/console/sign-in")
    assert state(world) == before


@pytest.mark.parametrize("page", PAGES + CONFIRMS)
def test_the_admin_key_sees_every_page(world, page):
    admin = sign_in(world.client, ADMIN)
    assert admin.get(url(page, world)).status_code == 200
    assert admin.get("/console/tenants/globex/adapters/secret-alias").status_code == 200


@pytest.mark.parametrize("page", PAGES)
def test_a_tenant_key_sees_its_own_tenant(world, page):
    assert sign_in(world.client, world.read_only).get(url(page, world)).status_code == 200


@pytest.mark.parametrize("page", TENANT_PAGES + CONFIRMS)
def test_another_tenants_page_is_the_same_404_as_the_api_gives(world, page):
    tenant = sign_in(world.client, world.tenant_admin)
    theirs = tenant.get(url(page, world, "globex"))
    nobody = tenant.get(url(page, world, "nobody"))
    assert theirs.status_code == nobody.status_code == 404
    api = world.env.admin("GET", "/tenants/nobody").json()["error"]["message"]
    assert api.replace("nobody", "globex") in theirs.text and api in nobody.text
    assert theirs.text.replace("globex", "nobody") == nobody.text  # nothing tells the two apart


def test_the_overview_of_a_tenant_shows_no_other_tenant(world):
    page = sign_in(world.client, world.read_only).get("/console/").text
    assert "acme" in page and "globex" not in page
    assert "engine-a" not in page  # the engines are shared infrastructure: the admin's to see
    assert "engine-a" in sign_in(world.client, ADMIN).get("/console/").text


@pytest.mark.parametrize(("change", "data"), CHANGES)
def test_a_read_only_tenant_session_changes_nothing(world, change, data):
    session = sign_in(world.client, world.read_only)
    before = state(world)
    response = session.change(url(change, world), data)
    assert response.status_code == 403 and "read-only" in response.text
    assert state(world) == before


@pytest.mark.parametrize("confirm", CONFIRMS)
def test_a_read_only_tenant_session_is_not_offered_a_change(world, confirm):
    session = sign_in(world.client, world.read_only)
    assert session.get(url(confirm, world)).status_code == 403
    assert "Promote…" not in session.get("/console/tenants/acme/adapters/support").text
    assert "Create key" not in session.get("/console/tenants/acme").text


@pytest.mark.parametrize(("change", "data"), CHANGES)
def test_a_tenant_admin_cannot_change_another_tenant(world, change, data):
    session = sign_in(world.client, world.tenant_admin)
    globex_keys = world.env.admin("GET", "/tenants/globex/keys").json()
    response = session.change(url(change, world, "globex"), data)
    assert response.status_code == 404
    assert world.env.admin("GET", "/tenants/globex/keys").json() == globex_keys


@pytest.mark.parametrize(("change", "data"), CHANGES)
def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(world, change, data):
    session = sign_in(world.client, ADMIN)
    before = state(world)
    missing = session.post(url(change, world), data)
    wrong = session.post(url(change, world), {**data, "csrf_token": "forged"})
    assert missing.status_code == wrong.status_code == 403
    assert "CSRF" in missing.text
    assert state(world) == before


def test_a_tenant_admin_creates_a_key_shown_once_that_works_and_revokes_it(world):
    session = sign_in(world.client, world.tenant_admin)
    created = session.change("/console/tenants/acme/keys", {"name": "from the console"})
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    secret = re.search(r'id="new-key">(lf_sk_[^<]+)<', created.text).group(1)
    models = world.client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert models.status_code == 200
    page = session.get("/console/tenants/acme").text
    assert secret not in page and secret[:10] in page  # listed by its prefix only, never again in full
    listed = world.env.admin("GET", "/tenants/acme/keys").json()
    new_id = next(k["id"] for k in listed if k["name"] == "from the console")
    assert session.change(f"/console/tenants/acme/keys/{new_id}/revoke").status_code == 303
    assert world.client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_a_tenant_admin_promotes_and_rolls_back_with_a_confirmation(world):
    session = sign_in(world.client, world.tenant_admin)
    confirm = session.get("/console/tenants/acme/adapters/support/promote?version=2")
    assert "served by <strong>support@2</strong> instead of <strong>support@1</strong>" in confirm.text
    done = session.change("/console/tenants/acme/adapters/support/promote", {"version": "2", "reason": "better"})
    assert done.status_code == 303 and production(world) == "support@2"
    assert "now serves <strong>support@2</strong>" in session.get(done.headers["location"]).text
    rollback = session.get("/console/tenants/acme/adapters/support/rollback").text
    assert "instead of <strong>support@2</strong>" in rollback
    assert session.change("/console/tenants/acme/adapters/support/rollback").status_code == 303
    assert production(world) == "support@1"
    history = world.env.admin("GET", "/tenants/acme/adapters/support/promotions").json()
    assert [(p["kind"], p["reason"]) for p in history][-2:] == [
        ("promote", "better"),
        ("rollback", "rolled back from the console"),
    ]


def test_signing_out_ends_the_session_on_the_server(world):
    session = sign_in(world.client, ADMIN)
    cookie = session.cookie
    out = session.change("/console/sign-out")
    assert out.status_code == 303 and 'lf_console=""' in out.headers["set-cookie"]
    assert Session(world.client, cookie).get("/console/").status_code == 303  # the old cookie is worthless


def test_an_expired_session_is_refused(world):
    session = sign_in(world.client, ADMIN)
    gw = world.client.app.state.gateway
    with gw.sessions() as db:
        db.execute(update(ConsoleSession).values(expires_at=ConsoleSession.created_at))
        db.commit()
    assert session.get("/console/").status_code == 303


def test_revoking_a_key_ends_the_console_sessions_signed_in_with_it(world):
    session = sign_in(world.client, world.read_only)
    assert session.get("/console/").status_code == 200
    world.env.admin("DELETE", f"/tenants/acme/keys/{key_id(world, 'acme')}")
    assert session.get("/console/").status_code == 303


def test_a_bad_key_is_refused_without_a_session_and_without_echoing_it(world):
    page = world.client.get("/console/sign-in")
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    response = world.client.post(
        "/console/sign-in", data={"key": "lf_sk_wrong-guess", "token": token},
        headers={"cookie": f"lf_console_sign_in={token}"}, follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 401 and "not valid" in response.text
    assert "lf_sk_wrong-guess" not in response.text and "lf_console=" not in response.headers.get("set-cookie", "")


def test_a_sign_in_form_posted_from_elsewhere_is_refused(world):
    # No sign-in cookie from our own form: a page on another site cannot sign a browser in to its own session.
    response = world.client.post("/console/sign-in", data={"key": ADMIN, "token": "made-up"}, follow_redirects=False)
    assert response.status_code == 403 and "lf_console=" not in response.headers.get("set-cookie", "")


def test_the_session_cookie_is_httponly_samesite_and_secure_over_tls(world):
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        world.client.base_url = base  # type: ignore[assignment]
        page = world.client.get("/console/sign-in")
        token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
        response = world.client.post(
            "/console/sign-in", data={"key": ADMIN, "token": token},
            headers={"cookie": f"lf_console_sign_in={token}"}, follow_redirects=False,
        )  # fmt: skip
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("lf_console="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and ("Secure" in cookie) is secure
        assert ADMIN not in cookie
    world.client.base_url = "http://testserver"  # type: ignore[assignment]


def test_no_key_appears_in_any_page_url_or_log(world, caplog):
    caplog.set_level(logging.DEBUG)
    keys = [ADMIN, world.read_only, world.tenant_admin, world.other]
    seen = []
    for key in keys:
        session = sign_in(world.client, key)
        for page in PAGES + CONFIRMS:
            response = session.get(url(page, world))
            seen.append(response.text + str(response.url) + response.headers.get("location", ""))
    assert not [key for key in keys for text in seen if key in text]
    assert not [key for key in keys if key in caplog.text]


def test_pages_load_nothing_from_elsewhere(world):
    admin = sign_in(world.client, ADMIN)
    for page in PAGES:
        response = admin.get(url(page, world))
        if page.endswith(".json"):
            continue
        sources = re.findall(r'(?:src|href)="([^"#?]+)', response.text)
        assert all(s.startswith("/console") for s in sources), sources
        assert "default-src 'self'" in response.headers["content-security-policy"]
    for name in ("console.css", "console.js"):
        assert world.client.get(f"/console/static/{name}").status_code == 200
    assert world.client.get("/console/static/..%2Fsessions.py").status_code == 404
