"""A training run's page: live stage, progress and loss curve while it runs; then its report — data counts, settings,
the loss curve, scores per scorer side by side (held-out and golden), sample answers, the decision and its reason,
time per stage. The report is the trainer's JSON as stored through the admin API (trainer/report.py); read
defensively, since older runs lack newer fields."""

from __future__ import annotations

from typing import Any

from gateway.console.plots.axes import number, percent
from gateway.console.plots.charts import Bars, Chart, Line, Point, grouped_bars, horizontal_bars, line_chart
from gateway.state import Gateway
from gateway.store.models import TrainingRun
from gateway.training_api import runs
from gateway.training_api.protocol import RunSummary


def run_page(gw: Gateway, tenant_id: str, run_id: str) -> dict[str, Any]:
    with gw.sessions() as session:
        runs.expire_lost(session, gw.settings.training.lease_s, tenant_id)
        run = runs.get_run(session, tenant_id, run_id)
    report: dict[str, Any] = run.report or {}
    training = report.get("training") or {}
    scores = report.get("scores") or []
    incumbent = report.get("production_version") or "base model"
    candidate = report.get("candidate_version") or run.candidate or "candidate"
    return {
        "held": run.status == "held",
        "run": run,
        "live": live_status(run),
        "live_loss_chart": loss_chart((run.progress or {}).get("loss_curve") or []),  # drawn while it runs
        "report": report,
        "incumbent": incumbent,
        "candidate": candidate,
        "data": report.get("data") or {},
        "settings": report.get("settings") or training.get("settings") or {},
        "training": training,
        "decision": report.get("decision") or {},
        "scores": scores,
        "samples": report.get("samples") or [],
        "notes": report.get("notes") or [],
        "timings": report.get("timings") or {},
        "loss_chart": loss_chart(list(enumerate(training.get("losses") or [], start=1))),
        "score_chart": score_chart(scores, incumbent, candidate),
        "time_chart": horizontal_bars("Time per stage", list(report.get("timings") or {}),
                                      list((report.get("timings") or {}).values())),
    }  # fmt: skip


def live_status(run: TrainingRun) -> dict[str, Any]:
    """What the page shows while a run goes on, and what its script polls for (`status.json`)."""
    progress = run.progress or {}
    step, total = progress.get("step"), progress.get("total_steps")
    fraction = step / total if isinstance(step, int | float) and isinstance(total, int | float) and total else None
    return {**RunSummary.of(run).model_dump(mode="json"), "fraction": fraction}


def loss_chart(losses: list[Any]) -> Chart:
    """The training loss over steps, from (step, loss) pairs: the report's every step, or the live progress's."""
    points = [Point(float(step), float(loss)) for step, loss in losses if loss is not None]
    return line_chart(
        f"Training loss per step ({int(points[-1].x) if points else 0} steps)",
        [Line("training loss", points)],
        time_axis=False,
        y_format=number,
        x_label="step",
        css_class="loss-chart",
    )


def score_chart(scores: list[dict[str, Any]], incumbent: str, candidate: str) -> Chart:
    """Held-out and golden scores per scorer: the incumbent before, the candidate after."""
    groups = [f"{row.get('split', '').replace('_', '-')} · {row.get('scorer', '')}" for row in scores]
    return grouped_bars(
        "Score before (production) vs after (candidate), per split and scorer",
        groups,
        [
            Bars(f"{incumbent} (before)", [float(row.get("incumbent") or 0) for row in scores]),
            Bars(f"{candidate} (after)", [float(row.get("candidate") or 0) for row in scores]),
        ],
        y_format=percent,
        y_max=1.0,
    )
