"""Ratings: accepted forms, validation, idempotency, one rating per end user, tenant isolation, listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedback.errors import (
    FeedbackNotFound,
    FieldTooLong,
    IdempotencyConflict,
    InteractionNotFound,
    InvalidCursor,
    InvalidRating,
    InvalidRequest,
)
from feedback.models import feedback
from feedback.ratings import get_feedback, list_feedback, parse_rating, record_feedback
from feedback.settings import RecordSettings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("up", 1),
        ("down", -1),
        (" UP ", 1),
        ("1", 1),
        ("-1", -1),
        ("+1", 1),
        (1, 1),
        (-1, -1),
        ("true", 1),
        ("false", -1),
        (True, 1),
        (False, -1),
        ("True", 1),
    ],
)
def test_accepted_rating_forms(value, expected):
    assert parse_rating(value) == expected


@pytest.mark.parametrize("value", ["", "meh", "2", 0, 2, -2, 1.0, None, [], {"rating": 1}, "thumbs up"])
def test_bad_ratings_are_refused_with_the_param_named(value):
    with pytest.raises(InvalidRating) as caught:
        parse_rating(value)
    assert caught.value.param == "rating"


def test_feedback_round_trip_and_rerating_replaces(db, seed, make_interaction, count_rows):
    served = make_interaction(adapter_version="support@2")
    seed(served)
    rate = {"tenant_id": "acme", "completion_id": served.id, "end_user": "u1"}
    first = record_feedback(db, rating="down", comment="wrong", **rate)
    assert (first.rating, first.rating_label, first.comment, first.adapter_version) == (
        -1,
        "down",
        "wrong",
        "support@2",
    )
    again = record_feedback(db, rating=True, correction="Better.", **rate)
    assert again.id == first.id and again.rating == 1 and again.comment is None and again.correction == "Better."
    assert again.created_at == first.created_at and again.updated_at >= first.updated_at
    other_user = record_feedback(db, tenant_id="acme", completion_id=served.id, rating=-1, end_user="u2")
    anonymous = record_feedback(db, tenant_id="acme", completion_id=served.id, rating="up")
    anonymous_again = record_feedback(db, tenant_id="acme", completion_id=served.id, rating="down")
    assert anonymous_again.id == anonymous.id and anonymous_again.end_user is None
    assert len({first.id, other_user.id, anonymous.id}) == 3
    assert count_rows(feedback) == 3
    assert get_feedback(db, "acme", first.id) == again
    assert again.to_json()["rating"] == "up" and again.to_json()["completion_id"] == served.id


def test_idempotency_id_replays_and_conflicts(db, seed, make_interaction, count_rows):
    served = make_interaction()
    seed(served)
    body = {"tenant_id": "acme", "completion_id": served.id, "rating": "up", "comment": "nice", "end_user": "u1"}
    stored = record_feedback(db, idempotency_id="req-1", **body)
    assert record_feedback(db, idempotency_id="req-1", **{**body, "rating": 1}) == stored  # the same, spelt differently
    assert count_rows(feedback) == 1
    with pytest.raises(IdempotencyConflict):
        record_feedback(db, idempotency_id="req-1", **{**body, "comment": "changed my mind"})
    # The same id is free in another tenant.
    other = make_interaction(tenant_id="globex")
    seed(other)
    record_feedback(db, tenant_id="globex", completion_id=other.id, rating="up", idempotency_id="req-1")
    assert count_rows(feedback) == 2


def test_another_tenants_completion_is_not_found_like_a_missing_one(db, seed, make_interaction, count_rows):
    served = make_interaction(tenant_id="acme")
    seed(served)
    for completion_id in (served.id, "chatcmpl-does-not-exist"):
        with pytest.raises(InteractionNotFound) as caught:
            record_feedback(db, tenant_id="globex", completion_id=completion_id, rating="up")
        assert str(caught.value) == f"no completion {completion_id!r}"
    with pytest.raises(FeedbackNotFound):
        get_feedback(db, "globex", record_feedback(db, tenant_id="acme", completion_id=served.id, rating="up").id)
    assert count_rows(feedback) == 1


def test_oversized_or_unstorable_fields_are_refused_and_nothing_stored(db, seed, make_interaction, count_rows):
    served = make_interaction()
    seed(served)
    settings = RecordSettings(feedback_max_comment_chars=10, feedback_max_correction_chars=20)
    cases = [
        ({"comment": "x" * 11}, FieldTooLong, "comment"),
        ({"correction": "x" * 21}, FieldTooLong, "correction"),
        ({"end_user": "u" * 257}, FieldTooLong, "user"),
        ({"comment": "a\x00b"}, InvalidRequest, "comment"),
        ({"comment": 5}, InvalidRequest, "comment"),
        ({"rating": "sideways"}, InvalidRating, "rating"),
        ({"completion_id": ""}, InvalidRequest, "completion_id"),
    ]
    for fields, error, param in cases:
        arguments = {"tenant_id": "acme", "completion_id": served.id, "rating": "up", **fields}
        with pytest.raises(error) as caught:
            record_feedback(db, settings=settings, **arguments)
        assert caught.value.param == param
    record_feedback(db, settings=settings, tenant_id="acme", completion_id=served.id, rating="up", comment="x" * 10)
    assert count_rows(feedback) == 1


def test_listing_filters_and_pages(db, seed, make_interaction):
    old = datetime.now(UTC) - timedelta(days=3)
    rows = [
        make_interaction(adapter_version="support@1"),
        make_interaction(adapter_version="support@2"),
        make_interaction(adapter_version=None),
        make_interaction(tenant_id="globex", adapter_version="support@1"),
    ]
    seed(*rows)
    for served, rating in zip(rows, ["up", "down", "up", "up"], strict=True):
        record_feedback(db, tenant_id=served.tenant_id, completion_id=served.id, rating=rating)
    with db.begin() as connection:  # one rating given three days ago
        connection.execute(feedback.update().where(feedback.c.interaction_id == rows[0].id).values(created_at=old))

    def ids(**filters):
        return {record.completion_id for record in list_feedback(db, **filters).items}

    assert ids(tenant_id="acme") == {rows[0].id, rows[1].id, rows[2].id}
    assert ids(tenant_id=None) == {r.id for r in rows}
    assert ids(tenant_id="acme", adapter="support") == {rows[0].id, rows[1].id}
    assert ids(tenant_id="acme", adapter="support@2") == {rows[1].id}
    assert ids(tenant_id="acme", rating="down") == {rows[1].id}
    assert ids(tenant_id="acme", completion_id=rows[2].id) == {rows[2].id}
    assert ids(tenant_id="acme", since=datetime.now(UTC) - timedelta(days=1)) == {rows[1].id, rows[2].id}
    assert ids(tenant_id="acme", until=datetime.now(UTC) - timedelta(days=1)) == {rows[0].id}

    seen, cursor = [], None
    while True:
        page = list_feedback(db, tenant_id=None, limit=3, cursor=cursor)
        seen += [record.id for record in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 4
    created = [record.created_at for record in list_feedback(db, tenant_id=None).items]
    assert created == sorted(created, reverse=True)
    with pytest.raises(InvalidCursor):
        list_feedback(db, tenant_id="acme", cursor="not-a-cursor")
