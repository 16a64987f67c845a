"""Privacy: forgetting an end user, and purging what is past a tenant's retention period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedback.models import feedback, interactions
from feedback.privacy import forget_end_user, purge_expired
from feedback.ratings import record_feedback


def test_forget_end_user_deletes_their_interactions_and_ratings_only(db, seed, make_interaction, count_rows):
    theirs = [make_interaction(end_user="jane") for _ in range(3)]
    someone_elses = make_interaction(end_user="joe")
    same_name_other_tenant = make_interaction(tenant_id="globex", end_user="jane")
    seed(*theirs, someone_elses, same_name_other_tenant)
    record_feedback(db, tenant_id="acme", completion_id=theirs[0].id, rating="up", end_user="jane")
    record_feedback(db, tenant_id="acme", completion_id=theirs[1].id, rating="up", end_user="support-agent")
    record_feedback(db, tenant_id="acme", completion_id=someone_elses.id, rating="down", end_user="jane")
    record_feedback(db, tenant_id="acme", completion_id=someone_elses.id, rating="up", end_user="joe")
    record_feedback(db, tenant_id="globex", completion_id=same_name_other_tenant.id, rating="up", end_user="jane")

    deleted = forget_end_user(db, "acme", "jane")
    assert (deleted.interactions, deleted.feedback) == (3, 3)
    assert count_rows(interactions) == 2 and count_rows(feedback) == 2
    assert forget_end_user(db, "acme", "jane") == type(deleted)(0, 0)
    with pytest.raises(ValueError):
        forget_end_user(db, "acme", "")


def test_purge_deletes_what_is_older_than_the_retention(db, seed, make_interaction, count_rows):
    now = datetime.now(UTC)
    old = [make_interaction(created_at=now - timedelta(days=40)) for _ in range(7)]
    recent = make_interaction(created_at=now - timedelta(days=5))
    other_tenant_old = make_interaction(tenant_id="globex", created_at=now - timedelta(days=40))
    seed(*old, recent, other_tenant_old)
    for served in (old[0], old[1], recent):
        record_feedback(db, tenant_id="acme", completion_id=served.id, rating="up")

    deleted = purge_expired(db, "acme", timedelta(days=30), chunk=3)
    assert (deleted.interactions, deleted.feedback) == (7, 2)
    assert count_rows(interactions) == 2 and count_rows(feedback) == 1
    assert purge_expired(db, "acme", timedelta(days=30)).interactions == 0
