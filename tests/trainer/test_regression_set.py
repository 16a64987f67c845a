"""The regression set built from the record: prompts whose answer several distinct users approved over time and
nobody rated down, from the history only (so the ratings under review cannot remove an item)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from feedback.models import feedback
from tests.trainer.record_rows import make_record, rated, served
from trainer.rated_interactions import rated_interactions
from trainer.rating_history import history
from trainer.regression_set import build
from trainer.tenant_settings import RegressionPolicy

ANY_TIME = RegressionPolicy(min_span_s=0)


@pytest.fixture
def record(tmp_path: Path) -> Engine:
    engine = make_record(tmp_path / "record.db")
    yield engine
    engine.dispose()


def approve(record: Engine, prompt: str, answer: str, users: int, *, rating: str = "up", start: int = 0) -> None:
    for u in range(start, start + users):
        rated(record, served(record, prompt, answer), rating, user=f"user-{u}")


def items(record: Engine, policy: RegressionPolicy = ANY_TIME, since: datetime | None = None, kind: str = "chat"):
    return build(history(rated_interactions(record, "acme", "support"), since), policy, "exact", kind)


def test_answers_several_users_approved_become_items(record):
    approve(record, "where is my parcel", "shipping", 3)
    approve(record, "refund me", "billing", 5)
    approve(record, "reset my password", "account", 2)  # too few users
    built = items(record)
    assert [(item.input, item.expected) for item in built] == [
        ([{"role": "user", "content": "refund me"}], "billing"),  # the most approved first
        ([{"role": "user", "content": "where is my parcel"}], "shipping"),
    ]
    assert {item.split for item in built} == {"regression"} and all(item.id.startswith("agreed-") for item in built)
    assert {item.scorer for item in built} == {"exact"}


def test_a_single_thumbs_down_removes_an_item(record):
    approve(record, "where is my parcel", "shipping", 4)
    approve(record, "where is my parcel", "Shipping!", 1, rating="down", start=10)  # near-identical answer
    assert items(record) == []


def test_the_same_user_many_times_is_one_approver(record):
    for _ in range(5):
        rated(record, served(record, "where is my parcel", "shipping"), "up", user="alice")
    assert items(record) == []


def test_approvals_must_span_some_time(record):
    approve(record, "where is my parcel", "shipping", 3)
    assert items(record, RegressionPolicy(min_span_s=3600)) == []
    with record.begin() as connection:  # as if the first approval was a day earlier
        first = connection.execute(feedback.select().order_by(feedback.c.created_at)).first()
        day_before = datetime.now(UTC) - timedelta(days=1)
        connection.execute(update(feedback).where(feedback.c.id == first.id).values(updated_at=day_before))
    assert len(items(record, RegressionPolicy(min_span_s=3600))) == 1


def test_two_agreed_answers_to_one_prompt_expect_neither(record):
    approve(record, "say hello", "hello", 3)
    approve(record, "say hello", "hi there", 3, start=10)
    assert items(record) == []


def test_only_the_history_counts_when_there_was_an_earlier_run(record):
    approve(record, "where is my parcel", "shipping", 3)
    time.sleep(0.002)
    since = datetime.now(UTC)
    time.sleep(0.002)
    approve(record, "where is my parcel", "shipping", 2, rating="down", start=10)  # under review: cannot remove it
    approve(record, "refund me", "billing", 3, start=20)  # new: not agreed on yet
    assert [item.expected for item in items(record, since=since)] == ["shipping"]


def test_the_setting_can_turn_it_off_and_cap_it(record):
    for n in range(5):
        approve(record, f"question {n}", f"answer {n}", 3, start=10 * n)
    assert items(record, RegressionPolicy(enabled=False)) == []
    assert len(items(record, RegressionPolicy(min_span_s=0, max_items=2))) == 2


def test_text_completions_stay_text(record):
    for u in range(3):
        rated(record, served(record, "Q: 2+2\nA:", " 4", endpoint="completion"), "up", user=f"u{u}")
    assert items(record, kind="chat") == []
    [item] = items(record, kind="text")
    assert item.input == "Q: 2+2\nA:" and item.expected == " 4" and item.model_extra["endpoint"] == "completion"
