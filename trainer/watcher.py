"""A run's progress on the terminal: one line per stage, a bar with the loss while training, a bar while evaluating."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from trainer.progress import TrainingProgress

_DONE = {
    "promoted": "green", "rejected": "yellow", "skipped": "dim", "failed": "red", "held": "magenta", "canary": "blue",
}  # fmt: skip


class RichWatcher:
    """A cycle `Watcher` for the CLI; use it as a context manager around the run."""

    def __init__(self, title: str, console: Console | None = None) -> None:
        self.title = title
        self.console = console or Console()
        self._progress = Progress(
            TextColumn("  [bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._training: TaskID | None = None
        self._evaluating: TaskID | None = None
        self._stage_started = time.perf_counter()
        self._stage: str | None = None

    def __enter__(self) -> RichWatcher:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def stage(self, name: str) -> None:
        if self._stage is not None and self._stage not in _DONE:
            elapsed = time.perf_counter() - self._stage_started
            self._progress.console.print(f"  [dim]{self.title}[/] {self._stage} [dim]{elapsed:.1f} s[/]")
        if name in _DONE:
            self._progress.console.print(f"  [dim]{self.title}[/] [{_DONE[name]}]{name}[/]")
        self._stage, self._stage_started = name, time.perf_counter()

    def training(self, progress: TrainingProgress) -> None:
        if self._training is None:
            self._training = self._progress.add_task(f"{self.title} training", total=None, note="")
        loss = "" if progress.loss is None else f"loss {progress.loss:.4f}"
        self._progress.update(self._training, completed=progress.step, total=progress.total_steps or None, note=loss)

    def evaluating(self, done: int, total: int) -> None:
        if self._evaluating is None:
            self._evaluating = self._progress.add_task(f"{self.title} evaluating", total=total, note="answers")
        self._progress.update(self._evaluating, completed=done, total=total)
