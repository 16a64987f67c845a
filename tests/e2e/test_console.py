"""The console in a real Chromium against the real gateway and vLLM: sign in, find an alias and promote a version by
clicking (the alias flips in `GET /v1/models` and in what answers), follow a training run the trainer makes to its
report and loss curve (drawn live as the trainer reports), filter interactions by 👎 and open one, upload and delete
a document with a progress bar; a tenant's session sees nothing of another tenant and a change without the CSRF
token is refused. Every page is screenshotted to var/test-artifacts/console/ (1280 px, and phone width for some)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pydantic import SecretStr
from sqlalchemy import update

from feedback.models import feedback
from gateway.store.models import Promotion, utcnow
from tests.e2e import stack
from tests.e2e.browser import DESKTOP, PHONE, chromium, fits_the_width, shot, sign_in
from tests.e2e.stack import ADMIN_KEY
from trainer import demo_tasks, demo_users
from trainer.cycle import Cycle
from trainer.gateway_client import GatewayClient
from trainer.run_status import LOSS_CURVE_POINTS, thinned
from trainer.settings import TrainerSettings

pytestmark = pytest.mark.e2e
TENANT, ALIAS = "console-acme", "support"
TRAIN_TENANT, TRAIN_ALIAS = "console-train", "router"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport=DESKTOP)
    made.set_default_timeout(30_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="module")
def acme(gateway, adapter_dirs) -> str:
    """A tenant whose alias is served by ALPHA (v1) with BRAVO (v2) registered beside it; a week of ratings of v1,
    this morning's of the base model, some 👎 with corrections. Returns its app key."""
    key = gateway.tenant(TENANT)
    for word in ("alpha", "bravo"):
        assert gateway.register(TENANT, ALIAS, adapter_dirs[word]).status_code == 201
    assert gateway.promote(TENANT, ALIAS, 1).status_code == 200
    client = gateway.client(key)
    for i in range(14):
        reply = client.chat.completions.create(model=ALIAS, messages=HELLO, max_tokens=3, user=f"user-{i % 5}")
        body: dict[str, object] = {"completion_id": reply.id, "rating": "up" if i % 3 else "down", "user": f"u{i}"}
        if i % 3 == 0:
            body.update(correction="Hello! How can I help?", comment="answers one word to everything")
        client.post("/feedback", body=body, cast_to=object)
    for _ in range(3):
        client.chat.completions.create(model=stack.BASE_NAME, messages=HELLO, max_tokens=3)
    # Spread v1's ratings and its promotion over the past week, as they would have come in.
    now = utcnow()
    with gateway.state.db.begin() as connection:
        rows = connection.execute(feedback.select().where(feedback.c.tenant_id == TENANT)).all()
        for index, row in enumerate(rows):
            when = now - timedelta(days=6 - index % 7, hours=index)
            connection.execute(update(feedback).where(feedback.c.id == row.id).values(created_at=when))
        connection.execute(update(Promotion).values(created_at=now - timedelta(days=7)).where(Promotion.reason == ""))
    return key


def test_sign_in_find_an_alias_and_promote_a_version_by_clicking(gateway, acme, page):
    sign_in(page, gateway.url, ADMIN_KEY)
    shot(page, "01-overview")
    page.click(f"a:text-is('{TENANT}')")
    expect(page.locator("h1")).to_contain_text(TENANT)
    expect(page.locator("table.aliases")).to_contain_text(f"{ALIAS}@1")
    shot(page, "02-tenant")
    page.click(f"table.aliases a:text-is('{ALIAS}')")
    expect(page.locator("#serving")).to_have_text(f"{ALIAS}@1")
    assert page.locator("#rating-chart svg .point").count() >= 2  # the 👍 rate per day is drawn
    shot(page, "03-adapter")

    page.click(f"a[aria-label='Promote {ALIAS}@2']")
    expect(page.locator("main")).to_contain_text(f"served by {ALIAS}@2 instead of {ALIAS}@1")
    shot(page, "04-confirm-promotion")
    page.click("button:has-text('Confirm promotion')")

    expect(page.locator(".flash")).to_contain_text(f"now serves {ALIAS}@2")
    expect(page.locator("#serving")).to_have_text(f"{ALIAS}@2")
    shot(page, "05-promoted")
    client = gateway.client(acme)
    listed = {model.id: model for model in client.models.list()}
    assert listed[ALIAS].root == f"{ALIAS}@2"  # type: ignore[attr-defined]
    reply = client.chat.completions.create(model=ALIAS, messages=HELLO, max_tokens=8, temperature=0)
    assert reply.model == f"{ALIAS}@2" and "BRAVO" in (reply.choices[0].message.content or "")


def test_filter_interactions_by_thumbs_down_and_open_one(gateway, acme, page):
    sign_in(page, gateway.url, ADMIN_KEY, f"/console/tenants/{TENANT}/interactions")
    page.select_option("#rating", "down")
    page.click("button:has-text('Filter')")
    rows = page.locator("table.interactions tbody tr")
    expect(rows).to_have_count(5)  # 14 rated, every third 👎
    for index in range(5):
        expect(rows.nth(index)).to_contain_text("thumbs down")
    assert "rating=down" in page.url  # a filtered list is a link a person can share
    shot(page, "06-interactions-thumbs-down")
    rows.first.locator("a").click()
    expect(page.locator(".rating-down")).to_contain_text("Hello! How can I help?")
    expect(page.locator(".rating-down")).to_contain_text("answers one word to everything")
    expect(page.locator("#answer")).not_to_be_empty()
    shot(page, "07-interaction")


@pytest.fixture(scope="module")
def run_in_progress(gateway, tiny_model, tmp_path_factory) -> Iterator[dict]:
    """A tenant whose users rated 60 routing answers, and a training run the trainer makes of them, in a thread."""
    settings = {"training": {"cpu_threads": 1, "epochs": 3, "learning_rate": 2e-3},
                "evaluation": {"max_tokens": 4, "held_out_fraction": 0.3, "gate": {"min_items": 5}}}  # fmt: skip
    assert gateway.admin("POST", "/tenants", json={"id": TRAIN_TENANT, "settings": settings}).status_code == 201
    assert gateway.admin("POST", f"/tenants/{TRAIN_TENANT}/adapters", json={"alias": TRAIN_ALIAS}).status_code == 201
    key = gateway.tenant(TRAIN_TENANT)
    client = gateway.client(key)
    served = demo_users.send(client, demo_tasks.examples("routing", 60, seed=11), model=TRAIN_ALIAS, max_tokens=4)
    demo_users.rate(client, served)
    trainer_settings = TrainerSettings(
        gateway_url=gateway.url, admin_key=SecretStr(ADMIN_KEY), database_url=gateway.settings.sqlalchemy_url,
        var_dir=tmp_path_factory.mktemp("trainer-var"), base_model=str(tiny_model), heartbeat_s=2,
    )  # fmt: skip
    cycle = Cycle(trainer_settings, GatewayClient(gateway.url, ADMIN_KEY))
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(done=cycle.run(TRAIN_TENANT, TRAIN_ALIAS)))
    thread.start()
    deadline = time.monotonic() + 60
    while not (found := gateway.admin("GET", f"/tenants/{TRAIN_TENANT}/training-runs").json()):
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    yield {"key": key, "run_id": found[0]["id"], "outcome": outcome, "thread": thread}
    thread.join(600)
    cycle.close()
    cycle.client.close()


def test_open_a_training_run_follow_it_and_see_its_loss_curve(gateway, run_in_progress, page):
    run_id = run_in_progress["run_id"]
    sign_in(page, gateway.url, ADMIN_KEY, f"/console/tenants/{TRAIN_TENANT}/runs/{run_id}")
    if not run_in_progress["outcome"]:  # still running: the live view
        expect(page.locator(".decision")).to_contain_text("running")
    # The page follows the run by itself and shows the report once it ends.
    page.wait_for_selector(".decision-promoted, .decision-rejected", timeout=300_000)
    run_in_progress["thread"].join(60)
    outcome = run_in_progress["outcome"]["done"]
    assert outcome.status in ("promoted", "rejected"), outcome.reason
    expect(page.locator("#reason")).to_contain_text(outcome.reason[:60])
    losses = outcome.report.training.losses
    assert len(losses) == outcome.report.training.steps > 0
    live = gateway.admin("GET", f"/tenants/{TRAIN_TENANT}/training-runs/{run_id}").json()["progress"]["loss_curve"]
    sent = thinned([(step, round(loss, 5)) for step, loss in enumerate(losses, start=1)], LOSS_CURVE_POINTS)
    assert [loss for _, loss in live] == [loss for _, loss in sent]  # the trainer sent the steps' losses as it went
    line = page.locator("#loss-chart polyline.series")
    assert int(line.get_attribute("data-points") or 0) == len(losses)
    assert len((line.get_attribute("points") or "").split()) == len(losses)  # one vertex per step, drawn
    expect(page.locator("#score-chart svg .bar")).to_have_count(2 * len(outcome.report.scores))
    shot(page, "09-run-report")
    page.set_viewport_size(PHONE)
    assert fits_the_width(page)
    shot(page, "10-run-report-phone")


def test_a_running_runs_loss_curve_is_drawn_live_without_a_reload(gateway, page):
    """The trainer's updates (sent here as the trainer sends them, over the admin API) carry the loss so far: the
    page's plot grows as they come, without reloading, and the report replaces it once the run ends."""
    tenant = "console-live"
    assert gateway.admin("POST", "/tenants", json={"id": tenant}).status_code == 201
    assert gateway.admin("POST", f"/tenants/{tenant}/adapters", json={"alias": "support"}).status_code == 201
    started = gateway.admin("POST", f"/tenants/{tenant}/training-runs", json={"adapter": "support"})
    assert started.status_code == 201, started.text
    run = f"/tenants/{tenant}/training-runs/{started.json()['id']}"

    def train_to(step: int) -> None:
        curve = [[n, round(2.0 / n, 4)] for n in range(1, step + 1)]
        progress = {"step": step, "total_steps": 40, "loss": curve[-1][1], "loss_curve": curve}
        assert gateway.admin("PATCH", run, json={"stage": "training", "progress": progress}).status_code == 200

    train_to(3)
    sign_in(page, gateway.url, ADMIN_KEY, f"/console{run.replace('training-runs', 'runs')}")
    series = page.locator("#live-loss-chart polyline.series")
    expect(series).to_have_attribute("data-points", "3")
    page.evaluate("window.notReloaded = true")
    train_to(12)
    expect(series).to_have_attribute("data-points", "12", timeout=15_000)
    assert len((series.get_attribute("points") or "").split()) == 12
    expect(page.locator(".decision [data-field=progress-text]")).to_contain_text("step 12 of 40")
    assert page.evaluate("window.notReloaded === true")  # drawn in place
    shot(page, "08-run-live")
    done = {"status": "rejected", "reason": "stopped by the test", "report": {}, "report_markdown": "# stopped"}
    assert gateway.admin("PATCH", run, json=done).status_code == 200
    expect(page.locator("#reason")).to_contain_text("stopped by the test", timeout=15_000)


def test_a_tenant_session_sees_nothing_of_another_tenant(gateway, acme, run_in_progress, page):
    sign_in(page, gateway.url, run_in_progress["key"])  # console-train's app key: read-only
    expect(page.locator("table.tenants tbody tr")).to_have_count(1)
    expect(page.locator("main")).not_to_contain_text(TENANT)
    expect(page.locator("header .badge")).to_contain_text("read-only")
    response = page.goto(f"{gateway.url}/console/tenants/{TENANT}/adapters/{ALIAS}")
    assert response is not None and response.status == 404
    theirs = page.locator("main").inner_text()
    shot(page, "11-other-tenant-404")
    page.goto(f"{gateway.url}/console/tenants/no-such-tenant/adapters/{ALIAS}")
    assert page.locator("main").inner_text() == theirs.replace(TENANT, "no-such-tenant")
    api = httpx.get(f"{gateway.url}/admin/tenants/no-such-tenant", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert api.json()["error"]["message"].replace("no-such-tenant", TENANT) in theirs


def test_a_change_without_the_csrf_token_is_refused(gateway, acme, page):
    before = gateway.admin("GET", f"/tenants/{TENANT}/adapters/{ALIAS}").json()["production"]
    sign_in(page, gateway.url, ADMIN_KEY, f"/console/tenants/{TENANT}/adapters/{ALIAS}/rollback")
    page.evaluate("document.querySelector('main form input[name=csrf_token]').remove()")
    page.click("button:has-text('Confirm rollback')")
    expect(page.locator("main")).to_contain_text("CSRF token is missing or wrong")
    shot(page, "12-csrf-refused")
    # A form on another site posting to the console: the session cookie (SameSite=Lax) does not go with it.
    elsewhere = (
        f'<form method="post" action="{gateway.url}/console/tenants/{TENANT}/adapters/{ALIAS}/rollback">'
        '<input name="csrf_token" value="guessed"><button>go</button></form>'
    )
    page.route("http://elsewhere.example/", lambda route: route.fulfill(body=elsewhere, content_type="text/html"))
    page.goto("http://elsewhere.example/")
    page.click("button")
    page.wait_for_load_state()
    assert "/console/sign-in" in page.url
    assert gateway.admin("GET", f"/tenants/{TENANT}/adapters/{ALIAS}").json()["production"] == before


def test_pages_at_phone_width_and_by_keyboard(gateway, acme, page):
    page.set_viewport_size(PHONE)
    sign_in(page, gateway.url, ADMIN_KEY, f"/console/tenants/{TENANT}")
    assert fits_the_width(page)
    shot(page, "13-tenant-phone")
    page.goto(f"{gateway.url}/console/tenants/{TENANT}/adapters/{ALIAS}")
    assert fits_the_width(page)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(40):  # on through the links to the first point of the 👍 chart
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('class')") == "point":
            break
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label and "%" in label
    expect(page.locator("#rating-chart .readout")).to_have_text(label)
    shot(page, "14-adapter-phone-keyboard")


@pytest.fixture(scope="module")
def retrieval_gateway(tmp_path_factory) -> Iterator[str]:
    """A gateway with retrieval on (the packaged embedding model) on a fake engine: the documents page needs no
    vLLM, and the session's gateway runs without retrieval."""
    import uvicorn

    from gateway.app import create_app
    from gateway.settings import EngineSettings, Settings
    from retrieval.settings import RetrievalSettings
    from tests.fake_engine import FakeEngine

    engine = FakeEngine(stack.BASE_NAME)
    settings = Settings(
        var_dir=tmp_path_factory.mktemp("docs-var"), port=stack.free_port(), admin_key=ADMIN_KEY, secret_key="s",
        base_model=stack.BASE_NAME, engine=EngineSettings(urls=["http://engine-a"]),
        retrieval=RetrievalSettings(enabled=True, sync_interval_s=0),
    )  # fmt: skip
    app = create_app(settings, transport=httpx.ASGITransport(engine.app))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    stack.wait_for(f"{url}/health", 120)
    httpx.post(f"{url}/admin/tenants", json={"id": TENANT}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    yield url
    server.should_exit = True
    thread.join(30)


def test_upload_a_document_with_progress_and_delete_it(retrieval_gateway, page, tmp_path: Path):
    document = tmp_path / "parking.md"
    document.write_text("# Parking\n" + "Staff parking is on level B2 of the underground garage. " * 60)
    sign_in(page, retrieval_gateway, ADMIN_KEY, f"/console/tenants/{TENANT}/documents")
    expect(page.locator("#index-state")).to_have_text("ready")
    page.set_input_files("#files", str(document))
    page.click("#upload button[type=submit]")
    expect(page.locator("#documents")).to_contain_text("parking.md")  # uploaded, indexed, page reloaded
    expect(page.locator("main")).to_contain_text("chunks searchable")
    shot(page, "15-documents")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[aria-label='Delete parking.md']")
    expect(page.locator(".flash")).to_contain_text("deleted")
    expect(page.locator("#documents")).not_to_contain_text("parking.md")
