"""One recipe per training mode, each a `train` function with the same signature (the `Recipe` protocol).

`eval_records` (validation examples: their loss is measured ten times over the run and reported as `valid_loss`) and
`callbacks` (more transformers callbacks: a fine-tuning job's checkpoints) are optional; the feedback cycle passes
neither, a fine-tuning job both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from trainer.config import TrainingConfig
from trainer.progress import ProgressCallback
from trainer.result import TrainingResult


class Recipe(Protocol):
    def __call__(
        self,
        config: TrainingConfig,
        base_model: str | Path,
        records: Iterable[Mapping[str, Any]],
        output_dir: str | Path,
        *,
        parent_adapter: str | Path | None = None,
        on_progress: ProgressCallback | None = None,
        eval_records: Iterable[Mapping[str, Any]] | None = None,
        callbacks: Sequence[Any] = (),
    ) -> TrainingResult: ...


def recipe_for(method: str) -> Recipe:
    """The recipe for `TrainingConfig.method`; imported on demand, since each pulls in torch and TRL."""
    if method == "sft":
        from trainer.recipes import sft

        return sft.train
    if method == "kto":
        from trainer.recipes import kto

        return kto.train
    if method == "dpo":
        from trainer.recipes import dpo

        return dpo.train
    raise ValueError(f"no recipe for method {method!r}")
