"""DPO recipe: a LoRA adapter trained with TRL's `DPOTrainer` on preference pairs; setup, train, save.

    result = dpo.train(config, "var/models/tiny-random", pairs, "var/trainer/jobs/ftjob-1/adapter")

`records` are `{"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message]}`, or OpenAI's
preference format (`input`, `preferred_output`, `non_preferred_output`), as fine-tuning jobs bring them. The
reference policy is the model the adapter starts from: the base model (the new adapter switched off), or the parent
adapter when continuing one. `config.dpo_beta` is how far the adapter may move from it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from trainer.config import TrainingConfig
from trainer.examples import DataError, dpo_rows
from trainer.progress import ProgressBridge, ProgressCallback
from trainer.recipes import setup
from trainer.result import TrainingResult


def train(
    config: TrainingConfig,
    base_model: str | Path,
    records: Iterable[Mapping[str, Any]],
    output_dir: str | Path,
    *,
    parent_adapter: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    eval_records: Iterable[Mapping[str, Any]] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainingResult:
    """Train an adapter on preference pairs and save it (PEFT files + the result) into `output_dir`.

    `eval_records`: pairs to measure the loss on every tenth of the run (progress events carry it as
    `valid_loss`). `callbacks`: more transformers callbacks (a fine-tuning job's checkpoints)."""
    began = time.perf_counter()
    setup.check_output_free(Path(output_dir))

    # Setup: the data, as TRL's conversational preference rows.
    rows = dpo_rows(list(records)[: config.max_examples])
    if not rows:
        raise DataError("DPO needs at least one preference pair")
    validation = dpo_rows(eval_records) if eval_records is not None else []

    # Setup: the model, seeded, and the adapter to train: a new one, or the parent continued.
    prepared = setup.prepare(config, base_model, parent_adapter)

    bridge = ProgressBridge(on_progress)
    with tempfile.TemporaryDirectory(prefix="loraflow-dpo-") as scratch, setup.torch_threads(config.cpu_threads):
        args = DPOConfig(
            **setup.trainer_arguments(config, prepared.placement, Path(scratch)),
            **setup.evaluation_arguments(config, validation),
            beta=config.dpo_beta,
            # The dropout is the LoRA's own, from the settings; TRL would otherwise switch it off.
            disable_dropout=False,
        )
        trainer = DPOTrainer(
            model=prepared.model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(validation) if validation else None,
            processing_class=prepared.tokenizer,
            peft_config=prepared.peft_config,
            callbacks=[bridge, *callbacks],
        )
        setup.quiet(trainer)

        # Train.
        result, dropped = setup.train_and_describe(
            trainer, bridge, prepared, method="dpo", config=config, rows=rows, output_dir=output_dir, began=began
        )

    # Save: the trained adapter only, with its lineage.
    if dropped:
        result.notes.append(f"{dropped} pairs dropped while preparing them for training")
    setup.save_adapter(trainer.model, Path(output_dir), result.save)
    return result
