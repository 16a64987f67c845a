"""The canary's pure parts: the always-valid test on four counts, the decision it leads to, the sticky split."""

from __future__ import annotations

import math
import random

import pytest

from gateway.canary.decision import CanaryPolicy, decide
from gateway.canary.sequential import Arm, evidence
from gateway.canary.split import to_candidate

THRESHOLD = math.log(20)  # alpha 0.05


def test_no_ratings_is_no_evidence():
    found = evidence(Arm(0, 0), Arm(0, 0))
    assert found.log_e_better == found.log_e_worse == 0.0
    assert decide(found, CanaryPolicy(), 0.0).outcome == "continue"


def test_a_clearly_better_candidate_is_shown_better_and_not_worse():
    found = evidence(control=Arm(300, 150), candidate=Arm(300, 210))
    assert found.log_e_better > THRESHOLD and found.log_e_worse < 0
    decision = decide(found, CanaryPolicy(), 0.0)
    assert decision.outcome == "promote" and decision.why == "better"
    assert "candidate better: 👍 rate candidate 0.700 of 300 vs production 0.500 of 300" in decision.reason


def test_the_two_directions_mirror_each_other():
    one = evidence(control=Arm(200, 80), candidate=Arm(150, 100))
    other = evidence(control=Arm(150, 100), candidate=Arm(200, 80))
    assert one.log_e_better == pytest.approx(other.log_e_worse)
    assert one.log_e_worse == pytest.approx(other.log_e_better)
    assert decide(other, CanaryPolicy(), 0.0).outcome == "rollback"


def test_equal_rates_give_no_evidence_either_way():
    found = evidence(control=Arm(1000, 600), candidate=Arm(1000, 600))
    assert found.log_e_better < 0 and found.log_e_worse < 0


def test_the_same_rates_on_more_ratings_are_stronger_evidence():
    small = evidence(control=Arm(40, 20), candidate=Arm(40, 28))
    large = evidence(control=Arm(400, 200), candidate=Arm(400, 280))
    assert small.log_e_better < THRESHOLD < large.log_e_better


def test_a_small_share_needs_more_traffic_for_the_same_gap():
    even = evidence(control=Arm(250, 125), candidate=Arm(250, 165))
    skewed = evidence(control=Arm(450, 225), candidate=Arm(50, 33))  # the same 500 ratings, 10% to the candidate
    assert even.log_e_better > skewed.log_e_better


def test_watching_after_every_rating_keeps_false_promotions_under_alpha():
    """Equal arms, iid ratings, the evidence looked at after every single one of 600 ratings, 400 times."""
    wrong = 0
    for seed in range(400):
        rng = random.Random(seed)
        counts = {True: [0, 0], False: [0, 0]}
        for _ in range(600):
            arm = rng.random() < 0.5
            counts[arm][0] += 1
            counts[arm][1] += rng.random() < 0.6
            if evidence(Arm(*counts[False]), Arm(*counts[True])).better(0.05):
                wrong += 1
                break
    assert wrong <= 20  # 5% of 400


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        Arm(3, 4)
    with pytest.raises(ValueError):
        Arm(3, -1)


def test_the_budget_decides_by_the_tenants_policy():
    undecided = evidence(control=Arm(60, 30), candidate=Arm(40, 21))
    assert decide(undecided, CanaryPolicy(max_ratings=1000), 0.0).outcome == "continue"
    by_ratings = decide(undecided, CanaryPolicy(max_ratings=100), 0.0)
    assert (by_ratings.outcome, by_ratings.why) == ("rollback", "ratings_budget")
    assert "undecided after 100 ratings (budget 100)" in by_ratings.reason
    by_time = decide(undecided, CanaryPolicy(max_duration_s=3600, on_budget="promote"), 7200.0)
    assert (by_time.outcome, by_time.why) == ("promote", "time_budget")
    assert "the tenant's policy says promote" in by_time.reason


def test_the_decision_carries_its_evidence():
    decision = decide(evidence(control=Arm(300, 150), candidate=Arm(300, 210)), CanaryPolicy(), 0.0)
    data = decision.to_json()
    assert data["outcome"] == "promote" and data["threshold"] == pytest.approx(THRESHOLD)
    assert data["candidate"] == {"ratings": 300, "ups": 210, "rate": 0.7}
    assert data["control"] == {"ratings": 300, "ups": 150, "rate": 0.5}
    assert data["log_e_better"] > THRESHOLD


@pytest.mark.parametrize(
    "bad", [{"share": 0.0}, {"share": 1.0}, {"alpha": 0.6}, {"max_ratings": 0}, {"ratings_per_user": 0}]
)
def test_bad_policies_are_refused(bad):
    with pytest.raises(ValueError):
        CanaryPolicy(**bad)


def test_the_policy_round_trips_through_json():
    policy = CanaryPolicy(share=0.25, on_budget="promote")
    assert CanaryPolicy.of({**policy.to_json(), "unknown": 1}) == policy


def test_the_split_is_sticky_and_near_its_share():
    units = [f"user-{i}" for i in range(20_000)]
    arms = [to_candidate("can_1", unit, 0.1) for unit in units]
    assert arms == [to_candidate("can_1", unit, 0.1) for unit in units]  # the same user, the same arm, always
    assert 0.09 < sum(arms) / len(arms) < 0.11
    # A larger share keeps everyone who was in the candidate arm there.
    assert all(to_candidate("can_1", unit, 0.5) for unit, arm in zip(units, arms, strict=True) if arm)
    # Another canary reshuffles.
    other = [to_candidate("can_2", unit, 0.1) for unit in units]
    assert sum(a and b for a, b in zip(arms, other, strict=True)) < 0.02 * len(units)
