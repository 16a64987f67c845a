"""The promotion gate: promote only a candidate that beats the incumbent beyond noise and regresses no golden item;
hold it for a person's review when the ratings it learned from look suspicious or it breaks what users agreed on.

Pure functions over paired per-item scores (the same items, answered by both), so the decision is reproducible
from the scores (and the signals' verdicts) alone:

- held-out: the paired bootstrap (seeded, `resamples` draws of the items with replacement) of
  mean(candidate - incumbent) gives a two-sided `confidence` interval; its lower bound must be above zero and
  above `min_margin`, over at least `min_items` items.
- golden: an item regresses when the incumbent scores more than `golden_tolerance` above the candidate on it;
  more than `max_golden_regressions` such items reject the candidate, whatever the held-out gain.
- regression set (answers several users approved over time, never contradicted: trainer/regression_set.py): the
  candidate regresses an item as it would a golden one; more than `max_regression_share` of the items, and the
  candidate is held for review rather than promoted.
- signals (trainer/rating_signals.py): any that fired holds for review a candidate the scores would promote.

Three decisions: promote; reject (production stays, the candidate is retired); hold (production stays, the candidate
stays staged, and a person approves or rejects it). A reject's reason also names what would have held it.
The incumbent is the production version, or the base model for an alias's first adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GatePolicy(BaseModel):
    """How sure the gate must be; per-tenant, stored as JSON like the training settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="Two-sided confidence of the bootstrap interval."
    )
    resamples: int = Field(default=10_000, ge=100, description="Bootstrap resamples.")
    seed: int = Field(default=0, description="Seed of the bootstrap, so a decision can be recomputed exactly.")
    min_margin: float = Field(
        default=0.0,
        ge=0.0,
        description="The interval's lower bound must also exceed this mean gain (0 to 1 score units).",
    )
    min_items: int = Field(default=20, ge=1, description="Fewer held-out items than this cannot show a gain: reject.")
    golden_tolerance: float = Field(
        default=0.0,
        ge=0.0,
        description="A golden item regresses when the incumbent scores more than this above the candidate.",
    )
    max_golden_regressions: int = Field(default=0, ge=0, description="Golden regressions allowed before rejecting.")
    max_regression_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Share of the regression set's items the candidate may do worse on than the incumbent before it "
        "is held for review (judged like golden items, with `golden_tolerance`).",
    )


class PairedScores(BaseModel):
    """Per-item scores of the candidate and the incumbent on the same items, in the same order."""

    item_ids: list[str]
    candidate: list[float]
    incumbent: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> PairedScores:
        if not len(self.item_ids) == len(self.candidate) == len(self.incumbent):
            raise ValueError("item_ids, candidate and incumbent scores must have the same length")
        return self

    @classmethod
    def of(cls, candidate: Sequence[float], incumbent: Sequence[float], item_ids: Sequence[str] | None = None):
        ids = list(item_ids) if item_ids is not None else [str(i) for i in range(len(candidate))]
        return cls(item_ids=ids, candidate=list(candidate), incumbent=list(incumbent))

    def __len__(self) -> int:
        return len(self.item_ids)


class _Item(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def split(self) -> str: ...


def split_pairs(
    items: Sequence[_Item], candidate: Sequence[float], incumbent: Sequence[float]
) -> tuple[PairedScores, PairedScores]:
    """Scores of evaluation items (`EvalItem`s, in the order scored) as (held-out pairs, golden pairs)."""
    return pairs_of("held_out", items, candidate, incumbent), pairs_of("golden", items, candidate, incumbent)


def pairs_of(
    split: str, items: Sequence[_Item], candidate: Sequence[float], incumbent: Sequence[float]
) -> PairedScores:
    """The paired scores of one split's items, in the order scored."""
    chosen = [(item.id, c, p) for item, c, p in zip(items, candidate, incumbent, strict=True) if item.split == split]
    return PairedScores(
        item_ids=[i for i, _, _ in chosen], candidate=[c for _, c, _ in chosen], incumbent=[p for _, _, p in chosen]
    )


class Interval(BaseModel):
    n: int
    candidate_mean: float
    incumbent_mean: float
    mean_delta: float
    low: float
    high: float
    confidence: float


class GoldenRegression(BaseModel):
    item_id: str
    candidate: float
    incumbent: float


class GateDecision(BaseModel):
    promote: bool
    reason: str
    incumbent: Literal["production", "base"]
    held_out: Interval | None
    golden_items: int
    golden_regressions: list[GoldenRegression]
    policy: GatePolicy
    decision: Literal["promote", "reject", "hold"] = "reject"
    regression_items: int = 0
    regression_failures: list[GoldenRegression] = Field(default_factory=list)
    concerns: list[str] = Field(default_factory=list, description="Why a person should look before promoting.")


def bootstrap_interval(
    candidate: Sequence[float], incumbent: Sequence[float], *, confidence: float, resamples: int, seed: int
) -> Interval:
    """Percentile interval of mean(candidate - incumbent) under the paired bootstrap."""
    # Here, not at the top: the gateway loads GatePolicy to check tenant settings (`tenant_settings.check`), and a
    # gateway stays free of numpy and torch.
    import numpy as np

    a, b = np.asarray(candidate, dtype=float), np.asarray(incumbent, dtype=float)
    deltas = a - b
    n = len(deltas)
    if n == 0:
        raise ValueError("no paired scores")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    # In chunks, so 10k resamples of a few thousand items stay within a few tens of MB.
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        means[start:stop] = deltas[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(
        n=n,
        candidate_mean=float(a.mean()),
        incumbent_mean=float(b.mean()),
        mean_delta=float(deltas.mean()),
        low=float(low),
        high=float(high),
        confidence=confidence,
    )


def golden_regressions(golden: PairedScores, tolerance: float) -> list[GoldenRegression]:
    return [
        GoldenRegression(item_id=item_id, candidate=c, incumbent=p)
        for item_id, c, p in zip(golden.item_ids, golden.candidate, golden.incumbent, strict=True)
        if p - c > tolerance + 1e-12  # float noise from 0-10 judge scales must not count as a regression
    ]


def decide(
    held_out: PairedScores,
    golden: PairedScores | None = None,
    policy: GatePolicy | None = None,
    incumbent: Literal["production", "base"] = "production",
    *,
    regression: PairedScores | None = None,
    signals: Sequence[str] = (),
) -> GateDecision:
    """Promote, reject or hold, with the reason in words a person reads in the run report. `signals`: what each
    fired signal found, in words."""
    policy = policy or GatePolicy()
    golden = golden or PairedScores.of([], [])
    regression = regression or PairedScores.of([], [])
    problems: list[str] = []

    interval = None
    if len(held_out) < policy.min_items:
        problems.append(f"only {len(held_out)} held-out items; the gate needs at least {policy.min_items}")
    if len(held_out):
        interval = bootstrap_interval(
            held_out.candidate,
            held_out.incumbent,
            confidence=policy.confidence,
            resamples=policy.resamples,
            seed=policy.seed,
        )
    gain = _describe(interval) if interval else ""
    bar = max(0.0, policy.min_margin)
    if interval is not None and len(held_out) >= policy.min_items and not interval.low > bar:
        what = "not better than" if interval.mean_delta <= 0 else "not clearly better than"
        needed = f"above {bar:+.3f}" if bar > 0 else "above zero"
        problems.append(f"{what} {incumbent}: {gain}; the lower bound must be {needed}")

    regressions = golden_regressions(golden, policy.golden_tolerance)
    if len(regressions) > policy.max_golden_regressions:
        shown = ", ".join(f"{r.item_id} ({r.incumbent:.2f} -> {r.candidate:.2f})" for r in regressions[:5])
        more = f" and {len(regressions) - 5} more" if len(regressions) > 5 else ""
        problems.append(f"{len(regressions)} of {len(golden)} golden items regress: {shown}{more}")

    concerns = [f"signal {signal}" for signal in signals]
    broken = golden_regressions(regression, policy.golden_tolerance)
    if broken and len(broken) > policy.max_regression_share * len(regression):
        shown = ", ".join(f"{r.item_id} ({r.incumbent:.2f} -> {r.candidate:.2f})" for r in broken[:5])
        more = f" and {len(broken) - 5} more" if len(broken) > 5 else ""
        concerns.append(
            f"breaks {len(broken)} of {len(regression)} answers users agreed on (regression set; allowed "
            f"{policy.max_regression_share:.0%}): {shown}{more}"
        )

    golden_note = f"no golden regressions ({len(golden)} items)" if len(golden) else "no golden set to check"
    if len(regression):
        golden_note += f"; {len(broken)} of {len(regression)} regression-set items regress"
    decision: Literal["promote", "reject", "hold"]
    if problems:
        decision, reason = "reject", "rejected: " + "; ".join(problems)
        if concerns:
            reason += "; would also have been held for review: " + "; ".join(concerns)
    elif concerns:
        decision = "hold"
        reason = f"held for review: {'; '.join(concerns)}; the scores alone would promote (beats {incumbent}, {gain})"
    else:
        decision, reason = "promote", f"promoted: beats {incumbent}, {gain}; {golden_note}"
    return GateDecision(
        promote=decision == "promote",
        reason=reason,
        incumbent=incumbent,
        held_out=interval,
        golden_items=len(golden),
        golden_regressions=regressions,
        policy=policy,
        decision=decision,
        regression_items=len(regression),
        regression_failures=broken,
        concerns=concerns,
    )


def _describe(interval: Interval) -> str:
    percent = round(interval.confidence * 100)
    return (
        f"{interval.candidate_mean:.3f} vs {interval.incumbent_mean:.3f} on {interval.n} held-out items, "
        f"mean gain {interval.mean_delta:+.3f} ({percent}% CI {interval.low:+.3f} to {interval.high:+.3f})"
    )
