"""What the console's pages show, read from the same services as the admin API: a run's report with its loss curve,
the settings form checked by the trainer's own rules, interactions filtered and opened, documents uploaded and
deleted through the page's script route."""

from __future__ import annotations

import re

from tests.console.conftest import ADMIN, World
from tests.console.support import sign_in
from tests.gateway.retrieval_support import files, open_env


def test_a_run_page_shows_the_decision_and_draws_a_point_per_step_of_the_loss(world: World):
    page = sign_in(world.client, world.read_only).get(f"/console/tenants/acme/runs/{world.run_id}").text
    assert "held-out exact +0.62" in page and "support@2" in page
    line = re.search(r'<polyline class="series" data-series="training loss" data-points="(\d+)" points="([^"]+)"', page)
    assert line and int(line.group(1)) == 24 and len(line.group(2).split()) == 24
    assert page.count('class="bar"') >= 4 + 5  # scores before/after for 2 rows, 5 stages timed
    assert "/never/shown" not in page  # the trainer's paths stay out of the page
    assert "My card was charged twice" in page  # sample answers side by side


def test_a_running_run_shows_its_progress_and_the_page_polls_it(world: World):
    gw = world.client.app.state.gateway  # type: ignore[attr-defined]
    from gateway.training_api import runs

    with gw.sessions() as session:  # one session per call, as the training API uses them
        run = runs.start_run(session, "globex", "secret-alias", "manual", "test", 60)
    with gw.sessions() as session:
        progress = {"step": 3, "total_steps": 12, "loss": 1.25, "loss_curve": [[1, 2.0], [2, 1.5], [3, 1.25]]}
        runs.update_run(session, "globex", run.id, {"stage": "training", "progress": progress}, 60)
    admin = sign_in(world.client, ADMIN)
    page = admin.get(f"/console/tenants/globex/runs/{run.id}").text
    assert "step 3 of 12" in page and "data-poll=" in page and 'value="0.25"' in page
    live = re.search(r'id="live-loss-chart".*?<polyline class="series" [^>]*data-points="(\d+)" points="([^"]+)"', page,
                     re.DOTALL)  # fmt: skip
    assert live and int(live.group(1)) == 3 and len(live.group(2).split()) == 3  # the loss so far, drawn
    status = admin.get(f"/console/tenants/globex/runs/{run.id}/status.json").json()
    assert (status["status"], status["stage"], status["fraction"]) == ("running", "training", 0.25)
    assert run.id in admin.get("/console/").text  # in progress, on the overview


def test_settings_are_checked_by_the_trainers_rules_before_anything_is_stored(world: World):
    session = sign_in(world.client, world.tenant_admin)
    bad = session.change("/console/tenants/acme/settings", {"schedule.cron": "every night", "training.epochs": "2"})
    assert bad.status_code == 400 and "bad cron line" in bad.text and "Nothing was saved" in bad.text
    assert 'value="every night"' in bad.text  # the form comes back as submitted
    assert "schedule" not in world.env.admin("GET", "/tenants/acme").json()["settings"]
    not_a_number = session.change("/console/tenants/acme/settings", {"training.epochs": "many"})
    assert not_a_number.status_code == 400 and "is not a number" in not_a_number.text

    good = session.change(
        "/console/tenants/acme/settings",
        {"schedule.cron": "30 2 * * *", "schedule.timezone": "Europe/Paris", "training.epochs": "5",
         "training.method": "kto", "min_new_ratings": "10", "retention_days": "90"},
    )  # fmt: skip
    assert good.status_code == 303
    stored = world.env.admin("GET", "/tenants/acme").json()["settings"]
    assert stored["schedule"] == {"cron": "30 2 * * *", "timezone": "Europe/Paris"}
    assert stored["training"] == {"epochs": 5.0, "method": "kto"} and stored["min_new_ratings"] == 10
    assert stored["retention_days"] == 90.0
    form = session.get("/console/tenants/acme/settings").text
    assert 'value="30 2 * * *"' in form and '<option value="kto" selected>' in form


def test_the_admin_api_checks_the_trainers_settings_too(world: World):
    refused = world.env.admin("PATCH", "/tenants/acme", json={"settings": {"schedule": {"timezone": "Mars/Olympus"}}})
    assert refused.status_code == 400 and "unknown time zone" in refused.json()["error"]["message"]
    assert refused.json()["error"]["param"] == "settings.schedule"
    assert world.env.admin("PATCH", "/tenants/acme", json={"settings": {"custom": {"any": 1}}}).status_code == 200


def test_interactions_are_filtered_and_one_opens_with_its_rating(world: World):
    session = sign_in(world.client, world.read_only)
    down = session.get("/console/tenants/acme/interactions", params={"rating": "down"}).text
    up = session.get("/console/tenants/acme/interactions", params={"rating": "up"}).text
    assert world.completion_id in down and world.completion_id not in up
    assert "No interaction matches" in session.get("/console/tenants/acme/interactions?user=bob").text
    bad = session.get("/console/tenants/acme/interactions?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.text
    detail = session.get(f"/console/tenants/acme/interactions/{world.completion_id}").text
    assert "Where is my parcel?" in detail and "It ships on Monday." in detail and "thumbs down" in detail


def test_documents_are_uploaded_and_deleted_through_the_console(tmp_path):
    with open_env(tmp_path) as env:
        env.tenant_with_key("acme")
        session = sign_in(env.client, "test-admin-key")
        page = session.get("/console/tenants/acme/documents").text
        token = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        upload = files(("parking.md", "# Parking\nStaff parking is on level B2."))
        refused = session.post("/console/tenants/acme/documents", files=upload)
        assert refused.status_code == 403  # no CSRF header: nothing stored
        stored = session.post("/console/tenants/acme/documents", files=upload, headers={"x-csrf-token": token})
        assert stored.status_code == 201, stored.text
        document = stored.json()["data"][0]
        assert "parking.md" in session.get("/console/tenants/acme/documents").text
        deleted = session.change(f"/console/tenants/acme/documents/{document['id']}/delete")
        assert deleted.status_code == 303
        assert "parking.md" not in session.get("/console/tenants/acme/documents").text


def test_a_candidate_held_for_review_is_approved_from_its_run_page(world: World):
    gw = world.client.app.state.gateway  # type: ignore[attr-defined]
    from gateway.training_api import runs

    with gw.sessions() as session:
        run = runs.start_run(session, "acme", "support", "schedule", "test", 60)
    report = {"production_version": "support@1", "candidate_version": "support@2"}
    changes = {"status": "held", "candidate": "support@2", "reason": "held for review: ratings look odd",
               "report": report}  # fmt: skip
    with gw.sessions() as session:
        runs.update_run(session, "acme", run.id, changes, 60)
    reader = sign_in(world.client, world.read_only)
    assert "Held for review" in reader.get(f"/console/tenants/acme/runs/{run.id}").text
    assert "Waiting for a person" in reader.get("/console/").text
    admin = sign_in(world.client, world.tenant_admin)
    assert "Approve: promote support@2" in admin.get(f"/console/tenants/acme/runs/{run.id}").text
    done = admin.change(f"/console/tenants/acme/runs/{run.id}/review", {"verdict": "approve", "reason": "checked"})
    assert done.status_code == 303
    assert world.env.admin("GET", "/tenants/acme/adapters/support").json()["production"] == "support@2"
    assert "Your verdict is recorded: promoted" in admin.get(done.headers["location"]).text
    again = admin.change(f"/console/tenants/acme/runs/{run.id}/review", {"verdict": "reject"})
    assert again.status_code == 409  # judged once
