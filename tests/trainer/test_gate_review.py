"""The gate's third decision: hold for review, when a signal about the ratings fired or the candidate breaks answers
users agreed on (the regression set), while the scores alone would promote."""

from __future__ import annotations

from trainer.gate import GatePolicy, PairedScores, decide

WIN = PairedScores.of([1.0] * 40, [0.0] * 40)
NOISE = PairedScores.of([1.0, 0.0] * 20, [0.0, 1.0] * 20)


def test_a_fired_signal_holds_a_candidate_the_scores_would_promote():
    decision = decide(WIN, signals=["concentration: the 2 most active of 2 raters gave 100% ..."])
    assert decision.decision == "hold" and not decision.promote
    assert decision.reason.startswith("held for review: signal concentration: the 2 most active")
    assert "the scores alone would promote (beats production" in decision.reason
    assert decision.concerns == ["signal concentration: the 2 most active of 2 raters gave 100% ..."]


def test_breaking_what_users_agreed_on_holds_the_candidate():
    regression = PairedScores.of([0.0, 0.0, 1.0], [1.0, 1.0, 1.0], item_ids=["agreed-a", "agreed-b", "agreed-c"])
    decision = decide(WIN, regression=regression)
    assert decision.decision == "hold"
    assert [r.item_id for r in decision.regression_failures] == ["agreed-a", "agreed-b"]
    assert "breaks 2 of 3 answers users agreed on (regression set; allowed 5%)" in decision.reason


def test_a_few_regression_items_within_the_allowance_still_promote():
    one_of_40 = PairedScores.of([0.0] + [1.0] * 39, [1.0] * 40)
    allowed = decide(WIN, regression=one_of_40)  # 2.5%, within the default 5%
    assert allowed.decision == "promote" and "1 of 40 regression-set items regress" in allowed.reason
    assert decide(WIN, regression=one_of_40, policy=GatePolicy(max_regression_share=0.0)).decision == "hold"
    three_of_40 = PairedScores.of([0.0] * 3 + [1.0] * 37, [1.0] * 40)
    assert decide(WIN, regression=three_of_40).decision == "hold"


def test_a_candidate_the_scores_reject_is_rejected_and_the_reason_names_the_signals_too():
    decision = decide(NOISE, signals=["drift: ..."])
    assert decision.decision == "reject"
    assert decision.reason.startswith("rejected: not better than production")
    assert "would also have been held for review: signal drift: ..." in decision.reason


def test_nothing_suspicious_promotes_as_before():
    decision = decide(WIN, regression=PairedScores.of([1.0] * 5, [1.0] * 5))
    assert decision.decision == "promote" and decision.promote and decision.concerns == []
    assert "0 of 5 regression-set items regress" in decision.reason
