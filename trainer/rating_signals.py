"""Signals that a run's new ratings may not be trustworthy, computed from the record alone (no golden set needed):

- contradictions: new ratings that reverse what other users said before about the same (near-identical) prompt and
  answer: 👍 before, 👎 now, or the other way round;
- concentration: the new ratings that decide what is trained on come mostly from a few raters (end users, or one
  key when the ratings name no user);
- drift: the 👍 rate of answers that did not change (the same prompt and answer, rated before and now) moves sharply.

Each signal reports its evidence and whether it fired; a fired signal turns the gate's promote into a hold for review
(trainer/gate.py). Thresholds are the tenant's `signals` setting; the defaults leave honest raters who disagree now
and then (a tenth of the time) well below them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from trainer.rated_interactions import RatedInteraction
from trainer.rating_history import History, RatingEvent
from trainer.report import Signal, Signals
from trainer.tenant_settings import ConcentrationPolicy, ContradictionPolicy, DriftPolicy, SignalPolicy


def check(history: History, policy: SignalPolicy | None = None) -> Signals:
    policy = policy or SignalPolicy()
    checks = [
        contradictions(history, policy.contradictions),
        concentration(history, policy.concentration),
        drift(history, policy.drift),
    ]
    return Signals(since=history.since, new_ratings=len(history.new), history_ratings=len(history.old), checks=checks)


def contradictions(history: History, policy: ContradictionPolicy) -> Signal:
    if history.since is None:
        return _unchecked("contradictions", "no earlier run that trained: no history to contradict")
    comparable = contradicting = 0
    per_group: Counter[tuple[str, str]] = Counter()
    for key, events in history.by_answer.items():
        old = [event for event in events if not event.new]
        for event in (event for event in events if event.new):
            said = _consensus([o for o in old if o.rater != event.rater])  # what other users said before
            if said == 0:
                continue
            comparable += 1
            if event.rating != said:
                contradicting += 1
                per_group[key] += 1
    share = contradicting / comparable if comparable else 0.0
    fired = contradicting >= policy.min_count and share >= policy.max_share
    summary = (
        f"{contradicting} of {comparable} new ratings of answers other users rated before reverse them "
        f"({share:.0%}; fires at {policy.max_share:.0%} and at least {policy.min_count})"
    )
    examples = [_example(history.by_answer[key], count) for key, count in per_group.most_common(5)]
    evidence = {"contradicting": contradicting, "comparable": comparable, "share": share}
    return Signal(name="contradictions", fired=fired, checked=comparable > 0, summary=summary, evidence=evidence,
                  examples=examples)  # fmt: skip


def concentration(history: History, policy: ConcentrationPolicy) -> Signal:
    decisive = _decisive(history)
    total = len(decisive)
    if total < policy.min_ratings:
        return _unchecked(
            "concentration", f"{total} decisive new ratings; at least {policy.min_ratings} are needed to judge"
        )
    by_rater = Counter(event.rater for event in decisive)
    top = by_rater.most_common(policy.top_raters)
    share = sum(count for _, count in top) / total
    fired = share >= policy.max_share
    effective = 1 / sum((count / total) ** 2 for count in by_rater.values())
    summary = (
        f"the {len(top)} most active of {len(by_rater)} raters gave {share:.0%} of the {total} new ratings that decide "
        f"what is trained on (fires at {policy.max_share:.0%}); {effective:.1f} raters' worth of independent votes"
    )
    keys = Counter(event.interaction.key_id for event in decisive)
    evidence = {
        "decisive_ratings": total,
        "raters": len(by_rater),
        "top_share": share,
        "effective_raters": effective,
        "top_raters": [{"rater": rater, "ratings": count, "share": count / total} for rater, count in top],
        "top_key": {"key_id": keys.most_common(1)[0][0], "share": keys.most_common(1)[0][1] / total},
    }
    return Signal(name="concentration", fired=fired, checked=True, summary=summary, evidence=evidence)


def drift(history: History, policy: DriftPolicy) -> Signal:
    if history.since is None:
        return _unchecked("drift", "no earlier run that trained: no history to drift from")
    before: list[RatingEvent] = []
    now: list[RatingEvent] = []
    shifts: dict[tuple[str, str], tuple[float, float]] = {}
    for key, events in history.by_answer.items():
        old = [event for event in events if not event.new]
        new = [event for event in events if event.new]
        if old and new:  # an answer that did not change: rated before, and rated again now
            before += old
            now += new
            shifts[key] = (_up_rate(old), _up_rate(new))
    if len(before) < policy.min_ratings or len(now) < policy.min_ratings:
        return _unchecked(
            "drift",
            f"{len(now)} new and {len(before)} earlier ratings of unchanged answers; "
            f"{policy.min_ratings} of each are needed to judge",
        )
    rate_before, rate_now = _up_rate(before), _up_rate(now)
    shift = rate_now - rate_before
    pooled = (rate_before * len(before) + rate_now * len(now)) / (len(before) + len(now))
    error = math.sqrt(pooled * (1 - pooled) * (1 / len(before) + 1 / len(now)))
    z = abs(shift) / error if error > 0 else (math.inf if shift else 0.0)
    fired = abs(shift) >= policy.max_shift and z >= policy.min_z
    summary = (
        f"👍 rate of {len(shifts)} unchanged answers: {rate_before:.2f} before ({len(before)} ratings), "
        f"{rate_now:.2f} now ({len(now)}): {shift:+.2f}, {min(z, 99.0):.1f} standard errors "
        f"(fires at ±{policy.max_shift:.2f} and {policy.min_z:.1f})"
    )
    moved = sorted(shifts, key=lambda key: -abs(shifts[key][1] - shifts[key][0]))[:5]
    evidence = {
        "answers": len(shifts),
        "ratings_before": len(before),
        "ratings_now": len(now),
        "up_rate_before": rate_before,
        "up_rate_now": rate_now,
        "shift": shift,
        "z": min(z, 1e6),
    }
    examples = [_example(history.by_answer[key], None) for key in moved]
    return Signal(name="drift", fired=fired, checked=True, summary=summary, evidence=evidence, examples=examples)


def _decisive(history: History) -> list[RatingEvent]:
    """New ratings that side with their interaction's majority (all its ratings): the ones that decide its label."""
    by_interaction: dict[str, list[RatingEvent]] = defaultdict(list)
    for event in history.events:
        by_interaction[event.interaction.id].append(event)
    decisive = []
    for events in by_interaction.values():
        majority = _consensus(events)
        decisive += [event for event in events if event.new and majority and event.rating == majority]
    return decisive


def _consensus(events: list[RatingEvent]) -> int:
    """+1 when most are 👍, -1 when most are 👎, 0 for a tie or nothing."""
    ups = sum(1 for event in events if event.up)
    downs = len(events) - ups
    return (ups > downs) - (downs > ups)


def _up_rate(events: list[RatingEvent]) -> float:
    return sum(1 for event in events if event.up) / len(events)


def _example(events: list[RatingEvent], contradicting: int | None) -> dict[str, object]:
    interaction = events[0].interaction
    old = [event for event in events if not event.new]
    new = [event for event in events if event.new]
    example: dict[str, object] = {
        "prompt": _last_text(interaction)[-200:],
        "answer": interaction.response_text[:200],
        "before": {"up": sum(e.up for e in old), "down": sum(not e.up for e in old)},
        "now": {"up": sum(e.up for e in new), "down": sum(not e.up for e in new)},
        "raters_now": sorted({event.rater for event in new})[:5],
    }
    if contradicting is not None:
        example["contradicting"] = contradicting
    return example


def _last_text(interaction: RatedInteraction) -> str:
    request = interaction.request
    if interaction.endpoint == "chat" and isinstance(request.get("messages"), list) and request["messages"]:
        content = request["messages"][-1].get("content")
        return content if isinstance(content, str) else str(content)
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else str(prompt)


def _unchecked(name: str, why: str) -> Signal:
    return Signal(name=name, fired=False, checked=False, summary=f"not judged: {why}", evidence={})
