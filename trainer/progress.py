"""Training progress as plain events, for a CLI progress bar and the admin API's job status alike."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from transformers import TrainerCallback

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass(frozen=True)
class TrainingProgress:
    """Where a training run stands after an optimiser step."""

    step: int
    total_steps: int
    epoch: float
    loss: float | None  # training loss of this step; None before the first step
    elapsed_s: float
    valid_loss: float | None = None  # loss on the validation examples, on the steps where it was measured

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


class ProgressCallback(Protocol):
    """Anything called with each `TrainingProgress`. An exception it raises aborts the run, and nothing is saved."""

    def __call__(self, progress: TrainingProgress) -> None: ...


@dataclass
class ProgressBridge(TrainerCallback):
    """A transformers `TrainerCallback` that turns the trainer's step logs into `TrainingProgress` events.

    It also keeps every step's loss, which the recipes report as final and mean loss.
    """

    on_progress: ProgressCallback | None = None
    losses: list[float] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()
        self._emit(state, None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The recipes log every step, so each "loss" entry is that step's loss; the final summary log has
        # "train_loss" instead and is not a step.
        if logs and "loss" in logs:
            loss = float(logs["loss"])
            self.losses.append(loss)
            self._emit(state, loss)
        elif logs and "eval_loss" in logs:  # an evaluation on the validation examples, after a step
            self._emit(state, None, float(logs["eval_loss"]))

    def _emit(self, state, loss: float | None, valid_loss: float | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(
                TrainingProgress(
                    step=state.global_step,
                    total_steps=state.max_steps,
                    epoch=float(state.epoch or 0.0),
                    loss=loss,
                    elapsed_s=time.perf_counter() - self._started,
                    valid_loss=valid_loss,
                )
            )


class RichProgressBar:
    """A `ProgressCallback` that draws a rich progress bar with the current loss; use it as a context manager.

    with RichProgressBar("training support@4") as bar:
        recipe.train(..., on_progress=bar)
    """

    def __init__(self, description: str = "training", console=None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress: Progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = self._progress.add_task(description, total=None, loss="-")

    def __enter__(self) -> RichProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def __call__(self, progress: TrainingProgress) -> None:
        loss = "-" if progress.loss is None else f"{progress.loss:.4f}"
        self._progress.update(self._task, completed=progress.step, total=progress.total_steps, loss=loss)
