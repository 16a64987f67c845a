"""The promotion gate on synthetic paired scores: clear win, noise, golden regression, tie, too few items."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.gate import GatePolicy, PairedScores, bootstrap_interval, decide, split_pairs


def binary(p: float, n: int, seed: int) -> list[float]:
    """n pass/fail scores of a model that passes with probability p."""
    return list((np.random.default_rng(seed).random(n) < p).astype(float))


def test_clear_win_is_promoted():
    held_out = PairedScores.of(binary(0.9, 200, seed=1), binary(0.3, 200, seed=2))
    golden = PairedScores.of([1.0] * 10, [1.0] * 10)
    decision = decide(held_out, golden)
    assert decision.promote
    assert decision.held_out.low > 0.4
    assert decision.reason.startswith("promoted: beats production")
    assert "no golden regressions (10 items)" in decision.reason


def test_noise_is_rejected():
    # Same underlying quality: any gain is luck of the draw.
    held_out = PairedScores.of(binary(0.5, 60, seed=3), binary(0.5, 60, seed=4))
    decision = decide(held_out)
    assert not decision.promote
    assert decision.held_out.low <= 0 < decision.held_out.high
    assert "better than production" in decision.reason and "lower bound must be above zero" in decision.reason


def test_a_golden_regression_rejects_even_a_clear_win():
    held_out = PairedScores.of(binary(0.9, 200, seed=5), binary(0.3, 200, seed=6))
    golden = PairedScores.of([1.0, 0.0, 1.0], [1.0, 1.0, 1.0], item_ids=["g1", "g2", "g3"])
    decision = decide(held_out, golden)
    assert not decision.promote
    assert [r.item_id for r in decision.golden_regressions] == ["g2"]
    assert "1 of 3 golden items regress: g2 (1.00 -> 0.00)" in decision.reason


def test_golden_tolerance_and_allowance():
    held_out = PairedScores.of([1.0] * 30, [0.0] * 30)
    golden = PairedScores.of([0.7, 0.5], [0.8, 1.0])
    assert not decide(held_out, golden).promote
    tolerant = GatePolicy(golden_tolerance=0.1)
    assert [r.item_id for r in decide(held_out, golden, tolerant).golden_regressions] == ["1"]
    assert decide(held_out, golden, GatePolicy(golden_tolerance=0.1, max_golden_regressions=1)).promote


def test_a_tie_is_not_an_improvement():
    scores = binary(0.7, 100, seed=7)
    decision = decide(PairedScores.of(scores, scores))
    assert not decision.promote
    assert decision.held_out.low == decision.held_out.high == 0.0
    assert "not better than production" in decision.reason


def test_a_worse_candidate_is_rejected():
    decision = decide(PairedScores.of(binary(0.2, 100, seed=8), binary(0.8, 100, seed=9)))
    assert not decision.promote and decision.held_out.mean_delta < 0


def test_margin_must_be_cleared_by_the_lower_bound():
    incumbent = binary(0.5, 400, seed=10)
    candidate = [1.0 if i % 5 == 0 else score for i, score in enumerate(incumbent)]  # fixes some of its misses
    held_out = PairedScores.of(candidate, incumbent)
    interval = bootstrap_interval(held_out.candidate, held_out.incumbent, confidence=0.95, resamples=10_000, seed=0)
    assert interval.low > 0
    assert decide(held_out).promote
    assert not decide(held_out, policy=GatePolicy(min_margin=interval.low + 0.01)).promote


def test_too_few_items_cannot_show_a_gain():
    decision = decide(PairedScores.of([1.0] * 5, [0.0] * 5))
    assert not decision.promote and "only 5 held-out items; the gate needs at least 20" in decision.reason
    assert decide(PairedScores.of([], [])).held_out is None


def test_first_adapter_is_compared_with_the_base_model():
    decision = decide(PairedScores.of([1.0] * 30, [0.0] * 30), incumbent="base")
    assert decision.promote and "beats base" in decision.reason


def test_bootstrap_is_seeded_and_matches_the_normal_approximation():
    c, p = binary(0.7, 500, seed=12), binary(0.5, 500, seed=13)
    a = bootstrap_interval(c, p, confidence=0.95, resamples=10_000, seed=3)
    b = bootstrap_interval(c, p, confidence=0.95, resamples=10_000, seed=3)
    assert a == b
    deltas = np.asarray(c) - np.asarray(p)
    half_width = 1.96 * deltas.std(ddof=1) / np.sqrt(len(deltas))
    assert a.low == pytest.approx(deltas.mean() - half_width, abs=0.01)
    assert a.high == pytest.approx(deltas.mean() + half_width, abs=0.01)


def test_paired_scores_must_line_up():
    with pytest.raises(ValueError, match="same length"):
        PairedScores.of([1.0, 0.0], [1.0])


def test_evaluated_items_split_into_held_out_and_golden_pairs():
    from trainer.scorers import EvalItem

    items = [
        EvalItem(id="h1", input="a", expected="x"),
        EvalItem(id="g1", input="b", expected="y", split="golden"),
        EvalItem(id="h2", input="c", expected="z"),
    ]
    held_out, golden = split_pairs(items, [1.0, 0.0, 1.0], [0.0, 1.0, 0.5])
    assert (held_out.item_ids, held_out.candidate, held_out.incumbent) == (["h1", "h2"], [1.0, 1.0], [0.0, 0.5])
    assert (golden.item_ids, golden.candidate, golden.incumbent) == (["g1"], [0.0], [1.0])
