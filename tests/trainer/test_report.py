"""The run report: JSON for the admin API and markdown a person reads."""

from __future__ import annotations

from datetime import UTC, datetime

from trainer.config import TrainingConfig
from trainer.gate import decide, split_pairs
from trainer.report import DataCounts, RunReport, Timings, score_table
from trainer.result import TrainingResult
from trainer.scorers import EvalItem

STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def training() -> TrainingResult:
    return TrainingResult(
        method="sft",
        adapter_dir="var/adapters/acme/support/4",
        base_model="var/models/demo",
        parent_adapter="var/adapters/acme/support/3",
        started_from="parent",
        dataset_hash="sha256:abc",
        num_examples=240,
        settings=TrainingConfig(),
        steps=90,
        epochs=3.0,
        final_loss=0.0123,
        mean_loss=0.4567,
        tokens=30000,
        duration_s=4.2,
        total_s=5.0,
        tokens_per_s=7142.9,
        device="cpu",
        dtype="float32",
    )


def evaluated() -> tuple[list[EvalItem], list[float], list[float]]:
    items = [EvalItem(id=f"h{i}", input="t", expected="billing", scorer="exact") for i in range(30)]
    items += [EvalItem(id=f"g{i}", input="t", expected="x", scorer="contains", split="golden") for i in range(4)]
    candidate = [1.0] * 27 + [0.0] * 3 + [1.0, 1.0, 0.0, 1.0]
    incumbent = [0.0] * 20 + [1.0] * 10 + [1.0, 1.0, 1.0, 1.0]
    return items, candidate, incumbent


def rejected_report() -> RunReport:
    items, candidate, incumbent = evaluated()
    held_out, golden = split_pairs(items, candidate, incumbent)
    decision = decide(held_out, golden)
    return RunReport(
        run_id="run-7",
        tenant="acme",
        adapter="support",
        status="rejected",
        reason=decision.reason,
        started_at=STARTED,
        candidate_version="support@4",
        production_version="support@3",
        data=DataCounts(train=240, held_out=30, golden=4, thumbs_up=230, thumbs_down=40, corrections=10),
        training=training(),
        scores=score_table(items, candidate, incumbent),
        decision=decision,
        timings={"dataset": 0.4, "train": 5.0, "evaluate": 2.5},
    )


def test_scores_are_grouped_per_split_and_scorer():
    items, candidate, incumbent = evaluated()
    rows = score_table(items, candidate, incumbent)
    assert [(row.split, row.scorer, row.n) for row in rows] == [("golden", "contains", 4), ("held_out", "exact", 30)]
    held = rows[1]
    assert (held.candidate, held.incumbent) == (0.9, 1 / 3)
    assert held.delta == held.candidate - held.incumbent and held.ci_low <= held.delta <= held.ci_high


def test_markdown_puts_scores_side_by_side_and_says_why():
    markdown = rejected_report().to_markdown()
    assert markdown.startswith("# acme / support: rejected")
    assert "candidate **support@4** vs **support@3**" in markdown
    assert "> rejected: 1 of 4 golden items regress: g2 (1.00 -> 0.00)" in markdown
    assert "| split | scorer | n | support@3 | support@4 | gain | 95% CI |" in markdown
    assert "| held_out | exact | 30 | 0.333 | 0.900 | +0.567 |" in markdown
    assert "| g2 | 1.00 | 0.00 |" in markdown
    assert "| 240 | 30 | 4 | 230 | 40 | 10 | 0 | - |" in markdown
    assert "| sft | parent | 240 | 90 | 0.0123 | 0.4567 | 4.2 s | 7,143 | cpu (float32) |" in markdown
    assert (
        "rank=16" in markdown and "target_modules=q_proj/k_proj/v_proj/o_proj/gate_proj/up_proj/down_proj" in markdown
    )
    assert "| **total** | 7.9 |" in markdown


def test_json_round_trips():
    report = rejected_report()
    assert RunReport.model_validate_json(report.to_json()) == report


def test_a_skipped_run_renders_without_scores_or_training():
    report = RunReport(
        run_id="run-8",
        tenant="acme",
        adapter="support",
        status="skipped",
        reason="skipped: 3 new examples since the last run; at least 20 are needed",
        started_at=STARTED,
        production_version="support@3",
        data=DataCounts(new_since_last_run=3),
        settings=TrainingConfig(),
    )
    markdown = report.to_markdown()
    assert "candidate **-** vs **support@3**" in markdown
    assert "## Scores" not in markdown and "## Training" not in markdown
    assert "| 3 |" in markdown and "learning_rate=0.001" in markdown


def test_first_adapter_is_shown_against_the_base_model():
    report = rejected_report().model_copy(update={"production_version": None})
    assert "vs **base model**" in report.to_markdown()


def test_timings_add_up_per_stage_even_when_a_stage_fails():
    timings = Timings()
    with timings.stage("train"):
        pass
    try:
        with timings.stage("evaluate"):
            raise RuntimeError("engine gone")
    except RuntimeError:
        pass
    assert list(timings) == ["train", "evaluate"]
    assert RunReport(
        run_id="r",
        tenant="t",
        adapter="a",
        status="failed",
        reason="failed: engine gone",
        started_at=STARTED,
        timings=timings,
    ).timings == dict(timings)
