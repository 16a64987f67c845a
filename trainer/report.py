"""The run report: what one flywheel run did and decided, as JSON for the admin API and markdown for a person."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from trainer.config import TrainingConfig
from trainer.gate import GateDecision, GatePolicy, bootstrap_interval
from trainer.result import TrainingResult
from trainer.scorers import EvalItem

# held: a person approves or rejects the candidate (left staged); canary: the gateway is proving it on real traffic
Status = Literal["promoted", "rejected", "skipped", "failed", "held", "canary"]
Split = Literal["held_out", "golden", "regression"]


class DataCounts(BaseModel):
    """How the run's data came together, from the record to the items trained and evaluated on."""

    train: int = 0
    held_out: int = 0
    golden: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    corrections: int = 0
    duplicates_removed: int = 0
    new_since_last_run: int | None = None
    rated_interactions: int = 0
    left_out: dict[str, int] = Field(default_factory=dict, description="Interactions or examples not used, by why.")


class Signal(BaseModel):
    """One check of the new ratings against the record's history (trainer/rating_signals.py), with its evidence."""

    name: Literal["contradictions", "concentration", "drift"]
    fired: bool
    checked: bool = Field(description="False: too little data, or no history, to judge; it never fires then.")
    summary: str = Field(description="The evidence and the threshold, in one sentence.")
    evidence: dict[str, Any] = Field(default_factory=dict)
    examples: list[dict[str, Any]] = Field(default_factory=list)


class Signals(BaseModel):
    since: datetime | None = Field(description="Ratings given or changed since then are new; None: all of them.")
    new_ratings: int
    history_ratings: int
    checks: list[Signal]

    @property
    def fired(self) -> list[Signal]:
        return [signal for signal in self.checks if signal.fired]


class ScoreRow(BaseModel):
    """One scorer on one split: the candidate and the incumbent side by side, with the paired interval."""

    split: Split
    scorer: str
    n: int
    candidate: float
    incumbent: float
    delta: float
    ci_low: float
    ci_high: float


class Sample(BaseModel):
    """One evaluation item with both answers, so a person can see what the scores mean."""

    item_id: str
    split: Split
    prompt: str = Field(description="The last user message (or text prompt), cut to a few hundred characters.")
    expected: str | None
    incumbent: str
    candidate: str
    incumbent_score: float
    candidate_score: float


class RunReport(BaseModel):
    run_id: str
    tenant: str
    adapter: str = Field(description="The adapter alias the run trains, e.g. `support`.")
    status: Status
    reason: str
    started_at: datetime
    finished_at: datetime | None = None
    candidate_version: str | None = Field(default=None, description="e.g. `support@4`; None when nothing was trained.")
    production_version: str | None = Field(default=None, description="The incumbent; None when it is the base model.")
    data: DataCounts = Field(default_factory=DataCounts)
    signals: Signals | None = Field(default=None, description="The new ratings checked against the history.")
    settings: TrainingConfig | None = None
    training: TrainingResult | None = None
    scores: list[ScoreRow] = Field(default_factory=list)
    decision: GateDecision | None = None
    samples: list[Sample] = Field(default_factory=list, description="A few items where the two answers differ.")
    dataset_hash: str | None = None
    notes: list[str] = Field(default_factory=list, description="Things a person should know about this run.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage, in the order run.")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_markdown(self) -> str:
        return render_markdown(self)


def score_table(
    items: Sequence[EvalItem],
    candidate: Sequence[float],
    incumbent: Sequence[float],
    policy: GatePolicy | None = None,
) -> list[ScoreRow]:
    """Per split and scorer, the two means and the paired bootstrap interval of their difference."""
    policy = policy or GatePolicy()
    groups: dict[tuple[str, str], list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault((item.split, item.scorer), []).append(index)
    rows = []
    for (split, scorer), indexes in sorted(groups.items()):
        interval = bootstrap_interval(
            [candidate[i] for i in indexes],
            [incumbent[i] for i in indexes],
            confidence=policy.confidence,
            resamples=policy.resamples,
            seed=policy.seed,
        )
        rows.append(
            ScoreRow(
                split=split,
                scorer=scorer,
                n=interval.n,
                candidate=interval.candidate_mean,
                incumbent=interval.incumbent_mean,
                delta=interval.mean_delta,
                ci_low=interval.low,
                ci_high=interval.high,
            )
        )
    return rows


class Timings(dict[str, float]):
    """Stage durations, filled by `with timings.stage("train"): ...`; a failed stage is timed too."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - started


def render_markdown(report: RunReport) -> str:
    incumbent = report.production_version or "base model"
    candidate = report.candidate_version or "-"
    lines = [
        f"# {report.tenant} / {report.adapter}: {report.status}",
        "",
        f"Run `{report.run_id}` started {report.started_at.isoformat(timespec='seconds')}: "
        f"candidate **{candidate}** vs **{incumbent}**",
        "",
        f"> {report.reason}",
        "",
    ]
    lines += [f"- {note}" for note in report.notes]
    if report.notes:
        lines.append("")
    if report.scores:
        percent = round((report.decision.policy.confidence if report.decision else 0.95) * 100)
        lines += [
            "## Scores",
            "",
            f"| split | scorer | n | {incumbent} | {candidate} | gain | {percent}% CI |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        lines += [
            f"| {row.split} | {row.scorer} | {row.n} | {row.incumbent:.3f} | {row.candidate:.3f} | "
            f"{row.delta:+.3f} | {row.ci_low:+.3f} to {row.ci_high:+.3f} |"
            for row in report.scores
        ]
        lines.append("")
    if report.signals is not None:
        lines += _signals_markdown(report.signals)
    if report.decision and report.decision.golden_regressions:
        lines += ["## Golden regressions", "", f"| item | {incumbent} | {candidate} |", "| --- | ---: | ---: |"]
        lines += [
            f"| {r.item_id} | {r.incumbent:.2f} | {r.candidate:.2f} |" for r in report.decision.golden_regressions
        ]
        lines.append("")
    if report.decision and report.decision.regression_failures:
        lines += [
            "## Regression set: answers users agreed on, now broken",
            "",
            f"| item | {incumbent} | {candidate} |",
            "| --- | ---: | ---: |",
        ]
        lines += [
            f"| {r.item_id} | {r.incumbent:.2f} | {r.candidate:.2f} |" for r in report.decision.regression_failures
        ]
        lines.append("")
    d = report.data
    new = "-" if d.new_since_last_run is None else str(d.new_since_last_run)
    lines += [
        "## Data",
        "",
        "| train | held-out | golden | thumbs up | thumbs down | corrections | duplicates removed | new since last |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {d.train} | {d.held_out} | {d.golden} | {d.thumbs_up} | {d.thumbs_down} | {d.corrections} | "
        f"{d.duplicates_removed} | {new} |",
        "",
    ]
    if d.left_out:
        lines += ["Left out: " + "; ".join(f"{count} {why}" for why, count in d.left_out.items()), ""]
    if report.samples:
        lines += [
            "## Samples",
            "",
            f"| split | prompt | expected | {incumbent} | {candidate} |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {s.split} | {_cell(s.prompt)} | {_cell(s.expected or '-')} | {_cell(s.incumbent)} "
            f"({s.incumbent_score:.0f}) | {_cell(s.candidate)} ({s.candidate_score:.0f}) |"
            for s in report.samples
        ]
        lines.append("")
    if report.training:
        t = report.training
        lines += [
            "## Training",
            "",
            "| method | from | examples | steps | final loss | mean loss | time | tokens/s | device |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            f"| {t.method} | {t.started_from} | {t.num_examples} | {t.steps} | {_num(t.final_loss)} | "
            f"{_num(t.mean_loss)} | {t.duration_s:.1f} s | {t.tokens_per_s:,.0f} | {t.device} ({t.dtype}) |",
            "",
        ]
        lines += [f"- {note}" for note in t.notes]
        if t.notes:
            lines.append("")
    settings = report.settings or (report.training.settings if report.training else None)
    if settings:
        shown = ", ".join(f"{key}={_setting(value)}" for key, value in settings.model_dump().items())
        lines += ["## Settings", "", shown, ""]
    if report.timings:
        lines += ["## Time", "", "| stage | seconds |", "| --- | ---: |"]
        lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in report.timings.items()]
        lines += [f"| **total** | {sum(report.timings.values()):.1f} |", ""]
    return "\n".join(lines)


def _signals_markdown(signals: Signals) -> list[str]:
    since = f"since {signals.since.isoformat(timespec='seconds')}" if signals.since else "(no earlier run: all)"
    lines = [
        "## Signals",
        "",
        f"{signals.new_ratings} new ratings {since}, checked against {signals.history_ratings} earlier ones.",
        "",
        "| signal | fired | evidence |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {s.name} | {'**yes**' if s.fired else ('no' if s.checked else '-')} | {_cell(s.summary, 300)} |"
        for s in signals.checks
    ]
    lines.append("")
    for signal in signals.fired:
        if signal.examples:
            lines += [f"{signal.name}, for example:", ""]
            lines += [
                f"- {_cell(str(e.get('prompt', '')), 100)} → {_cell(str(e.get('answer', '')), 60)}: "
                f"before {e['before']['up']} 👍 {e['before']['down']} 👎, now {e['now']['up']} 👍 {e['now']['down']} 👎"
                f" ({', '.join(e.get('raters_now', []))})"
                for e in signal.examples
            ]
            lines.append("")
    return lines


def _cell(text: str, limit: int = 80) -> str:
    """Text for one markdown table cell: one line, no pipes, cut."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _setting(value: object) -> str:
    return "/".join(value) if isinstance(value, list | tuple) else str(value)
