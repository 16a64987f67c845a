"""The canary's decisions on simulated users with known preferences: how often it promotes wrongly when both arms are
the same (A/A), how often it promotes a better candidate and rolls back a worse one, and how much traffic it takes.

    python -m bench.canary_simulation [--runs 1000] [--quick]

Each run is one canary: `users` end users, each with a 👍 probability of their own for production (drawn from a
Beta around `control_rate`, so users differ) and the candidate's (the same plus `effect`); users arrive with
lognormal activity (a few heavy users), are split by the gateway's own sticky hash (gateway/canary/split.py), and
rate `rate_prob` of their replies. The gateway's own decision (gateway/canary/decision.py) is taken every
`check_every` ratings, as the decision loop looks at the record every few seconds, until it decides or the
ratings budget runs out (then the policy's `on_budget`, rollback by default). No engine, no database.
Results go to bench/results/canary_simulation.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from functools import cache

import numpy as np

from bench import results_file
from gateway.canary.decision import CanaryPolicy, decide
from gateway.canary.sequential import Arm, evidence
from gateway.canary.split import to_candidate


@dataclass(frozen=True)
class Scenario:
    name: str
    effect: float  # the candidate's 👍 probability minus production's, for every user
    share: float = 0.5
    control_rate: float = 0.6
    users: int = 20_000
    spread: float = 8.0  # Beta concentration of users' preferences: lower, more different users
    rate_prob: float = 0.3
    check_every: int = 20
    max_ratings: int = CanaryPolicy.max_ratings
    ratings_per_user: int = 1


@dataclass(frozen=True)
class RunResult:
    outcome: str  # promote | rollback (the budget's decision included)
    why: str
    ratings: int  # counted at the decision, both arms
    requests: int  # served to the alias until the decision


@dataclass(frozen=True)
class Summary:
    scenario: Scenario
    runs: int
    promoted: int
    rolled_back: int
    decided_by_test: int  # promote or rollback shown by the test, not by the budget
    mean_ratings: float
    mean_requests: float

    @property
    def promote_rate(self) -> float:
        return self.promoted / self.runs

    @property
    def rollback_rate(self) -> float:
        return self.rolled_back / self.runs


def run_once(scenario: Scenario, seed: int) -> RunResult:
    """One canary until its decision."""
    s = scenario
    policy = CanaryPolicy(share=s.share, max_ratings=s.max_ratings, ratings_per_user=s.ratings_per_user)
    rng = np.random.default_rng(seed)
    control = rng.beta(s.control_rate * s.spread, (1 - s.control_rate) * s.spread, s.users)
    candidate = np.clip(control + s.effect, 0.0, 1.0)
    activity = rng.lognormal(0.0, 1.0, s.users)
    requests = int(s.max_ratings / s.rate_prob * 1.5)
    who = rng.choice(s.users, size=requests, p=activity / activity.sum())
    rated_at = np.flatnonzero(rng.random(requests) < s.rate_prob)  # request index of each rating
    raters = who[rated_at]
    counted = _first_ratings(raters, s.ratings_per_user)  # as the gateway counts them: a user's first ones
    rated_at, raters = rated_at[counted][: s.max_ratings], raters[counted][: s.max_ratings]
    arm = _arms(s.users, s.share)[raters]
    up = rng.random(len(raters)) < np.where(arm, candidate[raters], control[raters])
    candidate_n, candidate_up, all_up = np.cumsum(arm), np.cumsum(arm & up), np.cumsum(up)
    last = min(len(raters), s.max_ratings)
    for k in [*range(s.check_every, last, s.check_every), last]:
        i = k - 1
        cn, cu = int(candidate_n[i]), int(candidate_up[i])
        # Out of traffic before the ratings budget: as if its time budget ran out there.
        elapsed = policy.max_duration_s if k == last else 0.0
        decision = decide(evidence(Arm(k - cn, int(all_up[i]) - cu), Arm(cn, cu)), policy, elapsed)
        if decision.outcome != "continue":
            return RunResult(decision.outcome, decision.why, k, int(rated_at[i]) + 1)
    raise AssertionError("the budget always decides")


@cache
def _arms(users: int, share: float) -> np.ndarray:
    """Each user's arm by the gateway's hash. One canary id for every run: preferences are drawn anew each run, so
    they are independent of the arms all the same, and the hashes are computed once."""
    return np.array([to_candidate("can_simulation", f"user-{u}", share) for u in range(users)], dtype=bool)


def _first_ratings(raters: np.ndarray, per_user: int) -> np.ndarray:
    """Mask of the ratings that are among their user's first `per_user`."""
    order = np.argsort(raters, kind="stable")
    sorted_raters = raters[order]
    starts = np.flatnonzero(np.r_[True, sorted_raters[1:] != sorted_raters[:-1]])
    rank_sorted = np.arange(len(raters)) - np.repeat(starts, np.diff(np.r_[starts, len(raters)]))
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank < per_user


def simulate(scenario: Scenario, runs: int, first_seed: int = 0) -> Summary:
    results = [run_once(scenario, seed) for seed in range(first_seed, first_seed + runs)]
    return Summary(
        scenario=scenario,
        runs=runs,
        promoted=sum(r.outcome == "promote" for r in results),
        rolled_back=sum(r.outcome == "rollback" for r in results),
        decided_by_test=sum(r.why in ("better", "worse") for r in results),
        mean_ratings=float(np.mean([r.ratings for r in results])),
        mean_requests=float(np.mean([r.requests for r in results])),
    )


SCENARIOS = [
    Scenario("A/A", effect=0.0),
    Scenario("better (+0.10)", effect=0.10),
    Scenario("worse (-0.10)", effect=-0.10),
    Scenario("A/A", effect=0.0, share=0.1),
    Scenario("better (+0.10)", effect=0.10, share=0.1),
    Scenario("worse (-0.10)", effect=-0.10, share=0.1),
    Scenario("better (+0.05)", effect=0.05),
    # What counting only a user's first rating protects against: few users, very different tastes, heavy users,
    # and every rating of theirs counted.
    Scenario("A/A, 1,000 very different users", effect=0.0, users=1000, spread=2.0),
    Scenario(
        "A/A, 1,000 very different users, all ratings", effect=0.0, users=1000, spread=2.0, ratings_per_user=10**6
    ),
]


HEADERS = [
    "scenario", "share", "effect", "promoted", "rolled back", "decided by the test", "mean ratings to a decision",
    "mean requests to a decision",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="seeded runs per scenario")
    parser.add_argument("--quick", action="store_true", help="100 runs per scenario")
    args = parser.parse_args()
    runs = 100 if args.quick else args.runs
    started = time.monotonic()
    summaries = []
    for scenario in SCENARIOS:
        summary = simulate(scenario, runs)
        summaries.append(summary)
        print(
            f"{scenario.name:<28} share {scenario.share:.1f}: promoted {summary.promoted}/{runs}, rolled back "
            f"{summary.rolled_back}/{runs}, decided by the test {summary.decided_by_test}/{runs}, "
            f"mean {summary.mean_ratings:.0f} ratings / {summary.mean_requests:.0f} requests to a decision",
            flush=True,
        )
    rows = [
        [
            s.scenario.name, s.scenario.share, s.scenario.effect, f"{s.promoted}/{s.runs}", f"{s.rolled_back}/{s.runs}",
            f"{s.decided_by_test}/{s.runs}", round(s.mean_ratings), round(s.mean_requests),
        ]
        for s in summaries
    ]  # fmt: skip
    policy = CanaryPolicy(max_ratings=SCENARIOS[0].max_ratings)
    base = SCENARIOS[0]
    markdown = (
        "# Canary decisions on simulated users\n\n"
        f"`python -m bench.canary_simulation --runs {runs}`: {runs} seeded runs per scenario. Users: {base.users}, "
        f"each with a 👍 probability of their own (Beta, mean {base.control_rate}, concentration {base.spread} unless "
        f"said), lognormal activity, {base.rate_prob:.0%} of replies rated, sticky split by the gateway's hash; the "
        f"decision every {base.check_every} ratings; alpha {policy.alpha} per direction; budget {base.max_ratings} "
        f"ratings, then `on_budget: {policy.on_budget}`.\n\n"
        + results_file.table(HEADERS, rows)
        + f"\n{time.monotonic() - started:.0f} s in all.\n"
    )
    data = {
        "machine": results_file.machine(),
        "runs": runs,
        "policy": policy.to_json(),
        "scenarios": [
            {
                **s.scenario.__dict__,
                "promoted": s.promoted,
                "rolled_back": s.rolled_back,
                "decided_by_test": s.decided_by_test,
                "promote_rate": s.promote_rate,
                "rollback_rate": s.rollback_rate,
                "mean_ratings": s.mean_ratings,
                "mean_requests": s.mean_requests,
            }
            for s in summaries
        ],
    }
    json_path, md_path = results_file.write("canary_simulation", data, markdown)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
