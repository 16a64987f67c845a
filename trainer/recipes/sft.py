"""SFT recipe: a LoRA adapter trained with TRL's `SFTTrainer` on chat records; read top to bottom: setup, train, save.

    result = sft.train(config, "var/models/smollm2-135m-instruct", records, "var/adapters/t1/support/v4",
                       parent_adapter="var/adapters/t1/support/v3", on_progress=print)

`records` are OpenAI chat records `{"messages": [..., {"role": "assistant", "content": answer}]}`; the loss
falls on the last assistant answer and its end-of-turn token only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import SFTConfig

from trainer.config import TrainingConfig
from trainer.examples import DataError, sft_rows
from trainer.progress import ProgressBridge, ProgressCallback
from trainer.recipes import early_stopping, setup
from trainer.recipes.answer_loss import AnswerLossSFTTrainer
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
    """Train an adapter on `records` and save it (PEFT files + the result) into `output_dir`, which must not exist.

    `eval_records`: examples to measure the loss on ten times over the run (a fine-tuning job's validation file;
    progress events carry it as `valid_loss`). `callbacks`: more transformers callbacks (a job's checkpoints)."""
    began = time.perf_counter()
    setup.check_output_free(Path(output_dir))

    # Setup: the data, as TRL's conversational prompt-completion rows, so only the answer is learned.
    rows = sft_rows(list(records)[: config.max_examples])
    if not rows:
        raise DataError("no training examples with a non-empty answer")

    # Setup: a slice set aside to measure the loss on, so training stops once it no longer falls.
    rows, validation = early_stopping.validation_split(rows, config)
    stopping = early_stopping.EarlyStopping(config.early_stopping_patience or 1, config.early_stopping_min_delta)

    # Setup: the model, seeded, and the adapter to train: a new one, or the parent continued.
    prepared = setup.prepare(config, base_model, parent_adapter)

    bridge = ProgressBridge(on_progress)
    with tempfile.TemporaryDirectory(prefix="loraflow-sft-") as scratch, setup.torch_threads(config.cpu_threads):
        arguments = setup.trainer_arguments(config, prepared.placement, Path(scratch))
        trainer = AnswerLossSFTTrainer(
            model=prepared.model,
            args=SFTConfig(
                **arguments, **early_stopping.trainer_arguments(config, validation), completion_only_loss=True
            ),
            train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(validation) if validation else None,
            processing_class=prepared.tokenizer,
            peft_config=prepared.peft_config,
            callbacks=[bridge, stopping] if validation else [bridge],
        )
        setup.quiet(trainer)
        for callback in callbacks:
            trainer.add_callback(callback)
        if eval_records is not None:
            setup.measure_validation_loss(trainer, sft_rows(eval_records), config.batch_size)

        # Train.
        result, dropped = setup.train_and_describe(
            trainer, bridge, prepared, method="sft", config=config, rows=rows, output_dir=output_dir, began=began
        )

    # Save: the adapter and its lineage, together, or nothing.
    if validation:
        result.notes.append(f"{len(validation)} training examples set aside to measure the validation loss")
        result.notes.append(stopping.note(trainer.state.max_steps) or "no validation loss measured")
    if dropped:
        result.notes.append(f"{dropped} examples dropped: no answer token left within max_seq_length")
    setup.save_adapter(trainer.model, Path(output_dir), result.save)
    return result
