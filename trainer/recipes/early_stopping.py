"""Early stopping on held-out loss: a slice of the training examples is set aside, its loss measured every few steps,
and training stops once that loss no longer improves. `epochs` becomes a ceiling, not a cost paid in full.

On a CPU the passes after a task is learned are most of a run's time and buy nothing (a 4-label classifier learned
from 800 ratings is done well inside its first epoch).
"""

from __future__ import annotations

import math
import random
from typing import Any

from transformers import TrainerCallback

from trainer.config import TrainingConfig

# Fewer validation examples than this measure noise, not progress: early stopping is then off.
MIN_VALIDATION = 8


def validation_split(rows: list[dict[str, Any]], config: TrainingConfig) -> tuple[list[dict[str, Any]], list[dict]]:
    """(rows to train on, rows to measure the loss on): a seeded sample of at most a fifth of the rows."""
    if config.early_stopping_patience is None:
        return rows, []
    count = min(config.validation_examples, len(rows) // 5)
    if count < MIN_VALIDATION:
        return rows, []
    chosen = set(random.Random(config.seed).sample(range(len(rows)), count))
    return [r for i, r in enumerate(rows) if i not in chosen], [r for i, r in enumerate(rows) if i in chosen]


def trainer_arguments(config: TrainingConfig, validation: list[dict[str, Any]]) -> dict[str, Any]:
    """What the transformers Trainer needs to measure the validation loss every `eval_every_steps`."""
    if not validation:
        return {"eval_strategy": "no"}
    return {
        "eval_strategy": "steps",
        "eval_steps": config.eval_every_steps,
        "per_device_eval_batch_size": 2 * config.batch_size,  # no gradients kept: twice the batch fits
        "prediction_loss_only": True,
    }


class EarlyStopping(TrainerCallback):
    """Stops training when the validation loss has not fallen by `min_delta` for `patience` evaluations."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.worse = 0
        self.losses: list[tuple[int, float]] = []  # (step, validation loss)
        self.stopped_at: int | None = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        self.losses.append((state.global_step, float(loss)))
        if loss < self.best - self.min_delta:
            self.best, self.worse = float(loss), 0
            return
        self.worse += 1
        if self.worse >= self.patience and state.global_step < state.max_steps:
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def note(self, total_steps: int) -> str | None:
        """A line for the run's result: what the validation loss did, and where training stopped."""
        if not self.losses:
            return None
        curve = ", ".join(f"{loss:.3f}@{step}" for step, loss in self.losses)
        if self.stopped_at is None:
            return f"validation loss (at steps): {curve}"
        return (
            f"stopped early at step {self.stopped_at} of {total_steps}: validation loss no longer improving "
            f"(by {self.min_delta:g} over {self.patience} evaluations): {curve}"
        )
