"""The offline signals over a real record (tests/trainer/record_rows.py): contradictions, concentration and drift,
judged against the alias's history, with their evidence; honest raters who disagree now and then fire none."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.trainer.record_rows import make_record, rated, served
from trainer.rated_interactions import rated_interactions
from trainer.rating_history import history, near_identical
from trainer.rating_signals import check
from trainer.tenant_settings import ConcentrationPolicy, SignalPolicy

TICKETS = [f"ticket {n}: my parcel number {n} has not arrived" for n in range(12)]


@pytest.fixture
def record(tmp_path: Path) -> Engine:
    engine = make_record(tmp_path / "record.db")
    yield engine
    engine.dispose()


def boundary() -> datetime:
    """The start of 'this run': ratings from now on are new."""
    time.sleep(0.002)
    moment = datetime.now(UTC)
    time.sleep(0.002)
    return moment


def signals_of(record: Engine, since: datetime | None, policy: SignalPolicy | None = None):
    found = check(history(rated_interactions(record, "acme", "support"), since), policy)
    return {signal.name: signal for signal in found.checks}, found


def honest_history(record: Engine, users: int = 4) -> None:
    """Every ticket answered `shipping` and liked by several users."""
    for ticket in TICKETS:
        for u in range(users):
            rated(record, served(record, ticket, "shipping"), "up", user=f"honest-{u}")


def test_honest_raters_fire_no_signal(record):
    honest_history(record)
    since = boundary()
    rng = random.Random(0)
    for n, ticket in enumerate(TICKETS * 3):  # the same answers again, rated by new users; one in ten disagrees
        rated(record, served(record, ticket, "Shipping."), "down" if rng.random() < 0.1 else "up", user=f"new-{n}")
    signals, found = signals_of(record, since)
    assert found.new_ratings == 36 and found.history_ratings == 48
    assert found.fired == []
    assert all(signal.checked for signal in signals.values())
    assert signals["contradictions"].evidence["comparable"] == 36  # "Shipping." is near-identical to "shipping"
    assert signals["drift"].evidence["answers"] == len(TICKETS)


def test_raters_who_reverse_what_others_approved_fire_all_three(record):
    honest_history(record)
    since = boundary()
    for ticket in TICKETS:  # two hostile users dislike the approved answers and correct them to a wrong one
        for user in ("mallory", "trudy"):
            rated(record, served(record, ticket, "shipping"), "down", correction="billing", user=user)
    signals, found = signals_of(record, since)
    assert {signal.name for signal in found.fired} == {"contradictions", "concentration", "drift"}
    contradictions = signals["contradictions"]
    assert contradictions.evidence == {"contradicting": 24, "comparable": 24, "share": 1.0}
    assert contradictions.summary.startswith("24 of 24 new ratings of answers other users rated before reverse them")
    example = contradictions.examples[0]
    assert example["answer"] == "shipping" and example["before"] == {"up": 4, "down": 0}
    assert example["now"] == {"up": 0, "down": 2} and example["raters_now"] == ["mallory", "trudy"]
    concentration = signals["concentration"]
    assert concentration.evidence["raters"] == 2 and concentration.evidence["top_share"] == 1.0
    drift = signals["drift"]
    assert drift.evidence["up_rate_before"] == 1.0 and drift.evidence["up_rate_now"] == 0.0
    assert "-1.00" in drift.summary


def test_a_user_changing_their_own_mind_is_not_a_contradiction(record):
    ids = [served(record, ticket, "shipping") for ticket in TICKETS]
    for interaction_id in ids:
        rated(record, interaction_id, "up", user="alice")
    since = boundary()
    for ticket in TICKETS:
        rated(record, served(record, ticket, "shipping"), "down", user="alice")
    signals, _ = signals_of(record, since)
    assert signals["contradictions"].evidence["comparable"] == 0
    assert not signals["contradictions"].fired


def test_without_an_earlier_run_only_concentration_is_judged(record):
    for n, ticket in enumerate(TICKETS * 2):
        rated(record, served(record, ticket, "shipping"), "up", user=f"user-{n}")
    signals, found = signals_of(record, None)
    assert found.history_ratings == 0 and found.fired == []
    assert not signals["contradictions"].checked and "no history" in signals["contradictions"].summary
    assert not signals["drift"].checked
    assert signals["concentration"].checked and signals["concentration"].evidence["raters"] == 24


def test_ratings_that_name_no_user_are_counted_by_key(record):
    for n, ticket in enumerate(TICKETS * 2):
        key = "key_bot" if n % 4 else f"key_{n}"  # three quarters through one key, no end user named
        rated(record, served(record, ticket, "shipping", key_id=key), "up", user=None)
    signals, _ = signals_of(record, None)
    concentration = signals["concentration"]
    assert concentration.fired
    assert concentration.evidence["top_raters"][0] == {"rater": "key:key_bot", "ratings": 18, "share": 0.75}
    assert concentration.evidence["top_key"] == {"key_id": "key_bot", "share": 0.75}


def test_the_request_user_stands_in_for_a_rating_without_one(record):
    for n, ticket in enumerate(TICKETS * 2):
        rated(record, served(record, ticket, "shipping", end_user=f"app-user-{n}"), "up", user=None)
    signals, _ = signals_of(record, None)
    assert signals["concentration"].evidence["raters"] == 24 and not signals["concentration"].fired


def test_only_decisive_ratings_count_for_concentration(record):
    # A loud user outvoted on every interaction decides nothing.
    for n, ticket in enumerate(TICKETS * 2):
        interaction_id = served(record, ticket, "shipping")
        rated(record, interaction_id, "down", user="loud")
        rated(record, interaction_id, "up", user=f"a-{n}")
        rated(record, interaction_id, "up", user=f"b-{n}")
    signals, _ = signals_of(record, None)
    assert signals["concentration"].evidence["decisive_ratings"] == 48
    assert all(entry["rater"] != "loud" for entry in signals["concentration"].evidence["top_raters"])


def test_thresholds_are_the_tenants(record):
    for n, ticket in enumerate(TICKETS * 2):
        rated(record, served(record, ticket, "shipping"), "up", user=f"user-{n % 6}")
    default, _ = signals_of(record, None)
    assert not default["concentration"].fired  # the top 3 of 6 raters gave half
    strict = SignalPolicy(concentration=ConcentrationPolicy(max_share=0.5))
    signals, _ = signals_of(record, None, strict)
    assert signals["concentration"].fired and "fires at 50%" in signals["concentration"].summary
    too_few = SignalPolicy(concentration=ConcentrationPolicy(min_ratings=100))
    signals, _ = signals_of(record, None, too_few)
    assert not signals["concentration"].checked


def test_near_identical_ignores_case_punctuation_and_spacing():
    assert near_identical("  Billing. ") == near_identical("billing") == "billing"
    assert near_identical('{"name": "Ada"}') == near_identical('{"name":"ada"}')
    assert near_identical("billing") != near_identical("billings")
