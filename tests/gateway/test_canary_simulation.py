"""The canary on simulated users with known preferences (bench/canary_simulation.py: the gateway's own split and
decision, no engine): it promotes a better candidate, rolls back a worse one, and with equal arms promotes wrongly in
at most 5% of 1,000 seeded runs. `python -m bench.canary_simulation` writes the measured rates and the traffic to a
decision to bench/results/canary_simulation.md."""

from __future__ import annotations

import pytest

from bench.canary_simulation import Scenario, simulate

pytestmark = pytest.mark.slow


def test_equal_arms_are_promoted_wrongly_in_at_most_5_percent_of_1000_runs():
    summary = simulate(Scenario("A/A", effect=0.0, share=0.5), runs=1000)
    assert summary.promoted <= 50, f"{summary.promoted} wrong promotions in 1,000 A/A runs"


def test_a_better_candidate_is_promoted():
    summary = simulate(Scenario("better", effect=0.10, share=0.5), runs=100, first_seed=10_000)
    assert summary.promote_rate >= 0.9, summary
    assert summary.decided_by_test >= 90  # shown by the test, not by the end of the budget


def test_a_worse_candidate_is_rolled_back():
    summary = simulate(Scenario("worse", effect=-0.10, share=0.5), runs=100, first_seed=20_000)
    assert summary.rolled_back == 100
    assert summary.decided_by_test >= 90, summary
