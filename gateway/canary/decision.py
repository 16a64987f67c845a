"""What a canary does with its evidence: promote the candidate when it is shown better, send it back when shown
worse, and, once its traffic or time budget is spent undecided, what the tenant's policy says. Pure: the decision
loop (gateway/canary/loop.py) and the simulation (bench/canary_simulation.py) call the same function.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gateway.canary.sequential import Evidence

Outcome = Literal["continue", "promote", "rollback"]
Why = Literal["", "better", "worse", "ratings_budget", "time_budget"]


@dataclass(frozen=True)
class CanaryPolicy:
    """How a canary runs and ends; stored with it, so every replica decides by the same rules."""

    share: float = 0.1  # of the alias's traffic (end users, or keys) sent to the candidate
    alpha: float = 0.05  # per direction: P(promote | candidate not better) <= alpha, and the same for rollback
    max_ratings: int = 5000  # counted ratings, both arms together; then the budget decides
    max_duration_s: float = 7 * 24 * 3600.0
    on_budget: Literal["promote", "rollback"] = "rollback"
    # The split is by user, so users are the independent units: a user's first ratings count, the rest do not.
    # With 1 the test is exact; more gives more data from few heavy users but lets one user's taste weigh more
    # than the test assumes (bench/canary_simulation.py measures how much).
    ratings_per_user: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ValueError("share must be between 0 and 1 (exclusive)")
        if not 0 < self.alpha < 0.5:
            raise ValueError("alpha must be between 0 and 0.5")
        if self.max_ratings < 1 or self.max_duration_s <= 0:
            raise ValueError("the budget must be positive")
        if self.ratings_per_user < 1:
            raise ValueError("ratings_per_user must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: dict[str, Any]) -> CanaryPolicy:
        return cls(**{key: value for key, value in data.items() if key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    why: Why
    reason: str
    evidence: Evidence
    threshold: float  # log(1/alpha): what either log e-value must reach

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "why": self.why,
            "reason": self.reason,
            "threshold": self.threshold,
            **self.evidence.to_json(),
        }


def decide(evidence: Evidence, policy: CanaryPolicy, elapsed_s: float) -> Decision:
    """The decision for the counts so far, `elapsed_s` after the canary started."""
    threshold = math.log(1 / policy.alpha)
    counts = _counts(evidence)
    if evidence.better(policy.alpha):
        reason = f"candidate better: {counts}; log e-value {evidence.log_e_better:.2f} >= {threshold:.2f}"
        return Decision("promote", "better", reason, evidence, threshold)
    if evidence.worse(policy.alpha):
        reason = f"candidate worse: {counts}; log e-value {evidence.log_e_worse:.2f} >= {threshold:.2f}"
        return Decision("rollback", "worse", reason, evidence, threshold)
    why: Why = ""
    if evidence.ratings >= policy.max_ratings:
        why = "ratings_budget"
        spent = f"{evidence.ratings} ratings (budget {policy.max_ratings})"
    elif elapsed_s >= policy.max_duration_s:
        why = "time_budget"
        spent = f"{elapsed_s / 3600:.1f} h (budget {policy.max_duration_s / 3600:.1f} h)"
    if why:
        reason = f"undecided after {spent}: {counts}; the tenant's policy says {policy.on_budget}"
        return Decision(policy.on_budget, why, reason, evidence, threshold)
    return Decision("continue", "", f"not decided yet: {counts}", evidence, threshold)


def _counts(evidence: Evidence) -> str:
    def arm(name: str, ratings: int, rate: float | None) -> str:
        return f"{name} {rate:.3f} of {ratings}" if rate is not None else f"{name} no ratings"

    return (
        f"👍 rate {arm('candidate', evidence.candidate.ratings, evidence.candidate.rate)} vs "
        f"{arm('production', evidence.control.ratings, evidence.control.rate)}"
    )
