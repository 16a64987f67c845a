"""The record read back for a person: interactions filtered by alias, version, rating, user and time, paged, and one
opened with its ratings; another tenant's interaction is not found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedback.browse import get_interaction, list_interactions
from feedback.errors import InteractionNotFound, InvalidCursor, InvalidRequest
from feedback.ratings import record_feedback

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def served(db, seed, make_interaction):
    rows = {
        "a": make_interaction(alias="support", adapter_version="support@1", end_user="ann", created_at=T0),
        "b": make_interaction(alias="support", adapter_version="support@2", end_user="bob",
                              created_at=T0 + timedelta(minutes=1)),
        "c": make_interaction(alias="faq", adapter_version=None, end_user="ann", created_at=T0 + timedelta(minutes=2),
                              request={"messages": [{"role": "system", "content": "ctx"},
                                                    {"role": "user", "content": "Opening hours?"}]}),
        "other": make_interaction(tenant_id="globex", alias="support", created_at=T0),
    }  # fmt: skip
    seed(*rows.values())
    record_feedback(
        db, tenant_id="acme", completion_id=rows["a"].id, rating="down", correction="Right answer", end_user="ann"
    )
    record_feedback(db, tenant_id="acme", completion_id=rows["a"].id, rating="up", end_user="bob")
    record_feedback(db, tenant_id="acme", completion_id=rows["b"].id, rating="up", comment="great")
    return rows


def ids(page) -> list[str]:
    return [item.id for item in page.items]


def test_interactions_are_listed_newest_first_with_their_votes(db, served):
    page = list_interactions(db, "acme")
    assert ids(page) == [served["c"].id, served["b"].id, served["a"].id] and page.next_cursor is None
    a = page.items[2]
    assert (a.up, a.down, a.prompt, a.adapter_version) == (1, 1, "Where is my order?", "support@1")
    assert page.items[0].prompt == "Opening hours?"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"alias": "support"}, ["b", "a"]),
        ({"adapter_version": "support@2"}, ["b"]),
        ({"rating": "down"}, ["a"]),
        ({"rating": "up"}, ["b", "a"]),
        ({"rating": "unrated"}, ["c"]),
        ({"rating": "rated"}, ["b", "a"]),
        ({"end_user": "ann"}, ["c", "a"]),
        ({"since": T0 + timedelta(minutes=1)}, ["c", "b"]),
        ({"until": T0 + timedelta(minutes=1)}, ["a"]),
    ],
)
def test_interactions_are_filtered(db, served, filters, expected):
    assert ids(list_interactions(db, "acme", **filters)) == [served[name].id for name in expected]


def test_pages_follow_each_other_without_gaps(db, served):
    first = list_interactions(db, "acme", limit=2)
    second = list_interactions(db, "acme", limit=2, cursor=first.next_cursor)
    assert ids(first) + ids(second) == [served["c"].id, served["b"].id, served["a"].id]
    assert second.next_cursor is None
    with pytest.raises(InvalidCursor):
        list_interactions(db, "acme", cursor="nonsense")
    with pytest.raises(InvalidRequest):
        list_interactions(db, "acme", rating="sideways")


def test_an_interaction_opens_with_its_ratings_and_another_tenants_is_not_found(db, served):
    detail = get_interaction(db, "acme", served["a"].id)
    assert detail.summary.response_text == "It ships tomorrow." and detail.request["messages"][0]["role"] == "user"
    assert sorted((r.rating, r.correction) for r in detail.ratings) == [(-1, "Right answer"), (1, None)]
    with pytest.raises(InteractionNotFound):
        get_interaction(db, "acme", served["other"].id)
    with pytest.raises(InteractionNotFound):
        get_interaction(db, "acme", "chatcmpl-nope")
