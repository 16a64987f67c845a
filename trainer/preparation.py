"""Progress of making a base model ready (download, extraction, dequantisation, save, check), shown with rich.

A step is a context manager; the recipe calls `advance` when it knows how far it is, and a step with no total
shows a spinner and its time. `Silent` shows nothing (the trainer preparing a model by itself, tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


class PreparationError(RuntimeError):
    """The base model cannot be made ready; the message says why and what to do."""


class Step(Protocol):
    def advance(self, amount: float = 1) -> None: ...

    def note(self, text: str) -> None: ...


class Stages(Protocol):
    def stage(self, name: str, total: float | None = None) -> AbstractContextManager[Step]: ...


class _NoStep:
    def advance(self, amount: float = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class Silent:
    @contextmanager
    def stage(self, name: str, total: float | None = None) -> Iterator[Step]:
        yield _NoStep()


class _RichStep:
    def __init__(self, progress: Progress, task) -> None:
        self.progress, self.task = progress, task

    def advance(self, amount: float = 1) -> None:
        self.progress.advance(self.task, amount)

    def note(self, text: str) -> None:
        self.progress.update(self.task, note=text)


class RichStages:
    """One line per step: a spinner, the step, a bar when its size is known, the time it took, and a note."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[note]}[/]"),
            console=console or Console(stderr=True),
        )

    def __enter__(self) -> RichStages:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    @contextmanager
    def stage(self, name: str, total: float | None = None) -> Iterator[Step]:
        task = self.progress.add_task(name, total=total, note="")
        try:
            yield _RichStep(self.progress, task)
        except BaseException:
            self.progress.update(task, description=f"[red]{name}[/]")
            self.progress.stop_task(task)
            raise
        # A step with no size ends as a full bar, so every finished line looks alike.
        self.progress.update(task, total=total or 1, completed=total or 1)
        self.progress.stop_task(task)
