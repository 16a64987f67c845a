"""The canary's always-valid test: is the candidate's 👍 rate above production's, or below it? Pure arithmetic on
four counts, so every replica computes the same evidence from the same record.

Each direction is a mixture sequential probability ratio test against a composite null, the anytime-valid
likelihood ratio of universal inference (Wasserman, Ramdas & Balakrishnan, "Universal inference", PNAS 117(29),
16880-16890, 2020):

    E_better = [ ∫∫ L(p_cand, p_ctrl) dBeta(½,½)(p_cand) dBeta(½,½)(p_ctrl) ] / max { L : p_cand <= p_ctrl }

For any pair of rates in the null, the mixture divided by their likelihood is a nonnegative martingale with mean 1
as ratings arrive (it is the product of the mixture's predictive probabilities over the true ones), and the
maximum in the denominator only makes E smaller, so by Ville's inequality P(E_better ever reaches 1/alpha) <= alpha
when the candidate is not better. The counts may be looked at after every rating, and the test stopped whenever,
without inflating false decisions. It is exact for independent Bernoulli ratings, at any split share; `E_worse` is
the same with the null p_cand >= p_ctrl. Ratings of one sticky user are not independent: the simulation
(bench/canary_simulation.py) measures the error rate with heterogeneous users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_LOG_BETA_HALF = math.lgamma(0.5) * 2  # log B(½, ½) = log π


@dataclass(frozen=True)
class Arm:
    """One arm's ratings: how many, and how many were 👍."""

    ratings: int
    ups: int

    def __post_init__(self) -> None:
        if not 0 <= self.ups <= self.ratings:
            raise ValueError(f"0 <= ups <= ratings, got ups={self.ups} ratings={self.ratings}")

    @property
    def downs(self) -> int:
        return self.ratings - self.ups

    @property
    def rate(self) -> float | None:
        return self.ups / self.ratings if self.ratings else None


@dataclass(frozen=True)
class Evidence:
    """Both arms' counts and the log e-value of each direction (>= log(1/alpha): that direction is shown)."""

    control: Arm
    candidate: Arm
    log_e_better: float
    log_e_worse: float

    def better(self, alpha: float) -> bool:
        return self.log_e_better >= math.log(1 / alpha)

    def worse(self, alpha: float) -> bool:
        return self.log_e_worse >= math.log(1 / alpha)

    @property
    def ratings(self) -> int:
        return self.control.ratings + self.candidate.ratings

    def to_json(self) -> dict[str, Any]:
        return {
            "control": {"ratings": self.control.ratings, "ups": self.control.ups, "rate": self.control.rate},
            "candidate": {"ratings": self.candidate.ratings, "ups": self.candidate.ups, "rate": self.candidate.rate},
            "log_e_better": self.log_e_better,
            "log_e_worse": self.log_e_worse,
        }


def evidence(control: Arm, candidate: Arm) -> Evidence:
    """The two directions' log e-values for the counts so far (zero ratings: no evidence either way)."""
    mixture = _log_mixture(candidate) + _log_mixture(control)
    free = _log_likelihood(candidate, candidate.rate) + _log_likelihood(control, control.rate)
    total = control.ratings + candidate.ratings
    pooled = (control.ups + candidate.ups) / total if total else None
    tied = _log_likelihood(candidate, pooled) + _log_likelihood(control, pooled)
    # The null's maximum: the free maximum when the observed rates already lie in the null, else on its boundary
    # (equal rates, the pooled one): the binomial log-likelihood is concave.
    cand, ctrl = candidate.rate, control.rate
    looks_better = cand is not None and ctrl is not None and cand > ctrl
    looks_worse = cand is not None and ctrl is not None and cand < ctrl
    return Evidence(
        control=control,
        candidate=candidate,
        log_e_better=mixture - (tied if looks_better else free),
        log_e_worse=mixture - (tied if looks_worse else free),
    )


def _log_mixture(arm: Arm) -> float:
    """log ∫ p^ups (1-p)^downs dBeta(½,½)(p): the Krichevsky-Trofimov marginal likelihood."""
    return _log_beta(arm.ups + 0.5, arm.downs + 0.5) - _LOG_BETA_HALF


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _log_likelihood(arm: Arm, rate: float | None) -> float:
    if rate is None:  # no ratings: the likelihood of nothing is 1
        return 0.0
    total = 0.0
    if arm.ups:
        total += arm.ups * math.log(rate)
    if arm.downs:
        total += arm.downs * math.log1p(-rate)
    return total
