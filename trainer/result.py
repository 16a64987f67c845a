"""What a training run produced: the adapter's lineage and the run's figures, saved next to the adapter."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from trainer.config import TrainingConfig

RESULT_FILE = "loraflow-training.json"


class TrainingResult(BaseModel):
    """Lineage and figures of one trained adapter; the registry stores it with the new version."""

    method: Literal["sft", "kto", "dpo"]
    adapter_dir: str
    base_model: str = Field(description="The base model path or name the adapter was trained on.")
    parent_adapter: str | None = Field(
        default=None, description="The adapter training started from; None from scratch."
    )
    started_from: Literal["parent", "scratch"]
    dataset_hash: str = Field(description="sha256 of the training examples, in the order trained on.")
    num_examples: int = Field(description="Training examples used (after `max_examples` and empty-answer drops).")
    num_desirable: int | None = Field(default=None, description="KTO only: examples labelled desirable.")
    num_undesirable: int | None = Field(default=None, description="KTO only: examples labelled undesirable.")
    settings: TrainingConfig
    steps: int
    epochs: float
    final_loss: float | None = Field(description="Training loss of the last step.")
    mean_loss: float | None = Field(description="Training loss averaged over all steps.")
    losses: list[float] = Field(
        default_factory=list, description="Training loss of every optimiser step, in order: the run's loss curve."
    )
    tokens: int = Field(description="Non-padding tokens fed to the model, all epochs together.")
    duration_s: float = Field(description="Wall time of the training loop (setup and saving excluded).")
    total_s: float = Field(description="Wall time of the whole recipe: loading, training, saving.")
    cpu_s: float = Field(
        default=0.0,
        description="CPU time of the training loop, all threads of this process; far below duration_s x threads "
        "means the machine was busy with other work.",
    )
    tokens_per_s: float
    device: str
    dtype: str
    versions: dict[str, str] = Field(default_factory=dict, description="Library versions the adapter was made with.")
    notes: list[str] = Field(default_factory=list, description="Things a person should know about this run.")

    def save(self, directory: Path) -> Path:
        path = Path(directory) / RESULT_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, directory: Path) -> TrainingResult:
        return cls.model_validate_json((Path(directory) / RESULT_FILE).read_text())


def dataset_hash(records: Iterable[Mapping[str, Any]]) -> str:
    """A stable hash of training records: the same records in the same order give the same hash anywhere."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


def library_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "trl": trl.__version__,
    }
