"""Stats over time (what the console draws): ratings per version per day, requests per alias per hour, tenant totals;
the same buckets on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from feedback.models import feedback
from feedback.ratings import record_feedback
from feedback.stats import rating_series, request_series, tenant_totals, wilson_interval

DAY1 = datetime(2025, 3, 1, 10, 30, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def rate_at(db, completion_id: str, rating: str, when: datetime, tenant: str = "acme", user: str = "") -> None:
    stored = record_feedback(db, tenant_id=tenant, completion_id=completion_id, rating=rating, end_user=user or None)
    with db.begin() as connection:
        connection.execute(update(feedback).where(feedback.c.id == stored.id).values(created_at=when))


def test_rating_series_counts_each_version_per_day_with_its_interval(db, seed, make_interaction):
    v1 = [make_interaction(adapter_version="support@1", created_at=DAY1) for _ in range(4)]
    v2 = [make_interaction(adapter_version="support@2", created_at=DAY2) for _ in range(2)]
    other = make_interaction(adapter_version="faq@1", created_at=DAY1)
    seed(*v1, *v2, other)
    for served, rating in zip(v1, ["up", "up", "down"], strict=False):
        rate_at(db, served.id, rating, DAY1)
    rate_at(db, v1[3].id, "up", DAY2 + timedelta(hours=3))
    rate_at(db, v2[0].id, "up", DAY2)
    rate_at(db, other.id, "down", DAY1)

    series = rating_series(db, "acme", since=DAY1 - timedelta(days=1), alias="support")

    day1, day2 = DAY1.replace(hour=0, minute=0), DAY2.replace(hour=0, minute=0)
    got = [(b.adapter_version, b.start, b.ratings, b.up) for b in series]
    assert got == [("support@1", day1, 3, 2), ("support@1", day2, 1, 1), ("support@2", day2, 1, 1)]
    assert series[0].up_rate == 2 / 3 and series[0].interval == wilson_interval(2, 3)
    assert {b.adapter_version for b in rating_series(db, "acme", since=DAY1 - timedelta(days=1))} == {
        "support@1",
        "support@2",
        "faq@1",
    }
    assert rating_series(db, "acme", since=DAY2 + timedelta(days=1)) == []


def test_request_series_counts_each_alias_per_hour_with_tokens(db, seed, make_interaction):
    seed(
        make_interaction(alias="support", created_at=DAY1),
        make_interaction(alias="support", created_at=DAY1 + timedelta(minutes=20)),
        make_interaction(alias="support", created_at=DAY1 + timedelta(hours=1), usage=None),
        make_interaction(alias=None, adapter_version=None, created_at=DAY1),
        make_interaction(tenant_id="globex", alias="support", created_at=DAY1),
    )

    series = request_series(db, "acme", since=DAY1 - timedelta(hours=1), bucket_s=3600)

    hour = DAY1.replace(minute=0)
    got = [(b.alias, b.start, b.requests, b.tokens) for b in series]
    assert got == [(None, hour, 1, 9), ("support", hour, 2, 18), ("support", hour + timedelta(hours=1), 1, 0)]


def test_tenant_totals_sum_requests_tokens_and_ratings_since_a_time(db, seed, make_interaction):
    recent = [make_interaction(created_at=DAY2) for _ in range(3)]
    old = make_interaction(created_at=DAY1 - timedelta(days=30))
    globex = make_interaction(tenant_id="globex", created_at=DAY2)
    seed(*recent, old, globex)
    rate_at(db, recent[0].id, "up", DAY2)
    rate_at(db, recent[1].id, "down", DAY2)
    rate_at(db, old.id, "up", DAY1 - timedelta(days=30))

    totals = tenant_totals(db, since=DAY1)

    assert set(totals) == {"acme", "globex"}
    acme = totals["acme"]
    assert (acme.requests, acme.tokens, acme.ratings, acme.up, acme.up_rate) == (3, 27, 2, 1, 0.5)
    assert totals["globex"].ratings == 0 and totals["globex"].up_rate is None
    assert set(tenant_totals(db, since=DAY1, tenant_id="globex")) == {"globex"}
