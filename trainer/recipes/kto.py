"""KTO recipe: a LoRA adapter trained with TRL's `KTOTrainer` on thumbs-up and thumbs-down answers; setup, train, save.

    result = kto.train(config, "var/models/smollm2-135m-instruct", records, "var/adapters/t1/support/v4",
                       parent_adapter="var/adapters/t1/support/v3")

`records` are `{"prompt": [messages], "completion": [assistant message], "label": bool}` (or `{"messages": [...],
"label": bool}`). The reference policy is the parent adapter when continuing one (TRL keeps a frozen copy of it),
else the base model; KTO is best run from an adapter that SFT has already taught the task's format.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import KTOConfig, KTOTrainer

from trainer.config import TrainingConfig
from trainer.examples import DataError, kto_rows
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
    """Train an adapter on rated `records` and save it (PEFT files + the result) into `output_dir`.

    `eval_records`: rated examples to measure the loss on every tenth of the run (progress events carry it as
    `valid_loss`). `callbacks`: more transformers callbacks."""
    began = time.perf_counter()
    setup.check_output_free(Path(output_dir))

    # Setup: the data. KTOTrainer reads it in order (its KL term pairs neighbours in a batch), so the shuffle that
    # keeps one tenant's burst of thumbs-down out of a single batch is ours, seeded.
    rows = kto_rows(list(records)[: config.max_examples])
    if len(rows) < 2:
        raise DataError("KTO needs at least 2 rated examples")
    random.Random(config.seed).shuffle(rows)
    desirable = sum(row["label"] for row in rows)
    desirable_weight, undesirable_weight = balanced_weights(desirable, len(rows) - desirable)
    validation = kto_rows(list(eval_records)) if eval_records is not None else []

    # Setup: the model, seeded before a new adapter's weights are drawn.
    prepared = setup.prepare(config, base_model, parent_adapter)

    bridge = ProgressBridge(on_progress)
    with tempfile.TemporaryDirectory(prefix="loraflow-kto-") as scratch, setup.torch_threads(config.cpu_threads):
        args = KTOConfig(
            **setup.trainer_arguments(config, prepared.placement, Path(scratch)),
            **setup.evaluation_arguments(config, validation),
            beta=config.kto_beta,
            desirable_weight=desirable_weight,
            undesirable_weight=undesirable_weight,
            # The dropout is the LoRA's own, from the settings; TRL would otherwise switch it off.
            disable_dropout=False,
        )
        trainer = KTOTrainer(
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
        result, _ = setup.train_and_describe(
            trainer, bridge, prepared, method="kto", config=config, rows=rows, output_dir=output_dir, began=began
        )

    # Save: the trained adapter only (not TRL's frozen reference copy), with its lineage.
    result.num_desirable, result.num_undesirable = desirable, len(rows) - desirable
    if (desirable_weight, undesirable_weight) != (1.0, 1.0):
        result.notes.append(
            f"{desirable} thumbs-up vs {len(rows) - desirable} thumbs-down: losses weighted "
            f"{desirable_weight:.2f} (desirable) and {undesirable_weight:.2f} (undesirable)"
        )
    setup.save_adapter(trainer.model, Path(output_dir), result.save)
    return result


def balanced_weights(desirable: int, undesirable: int) -> tuple[float, float]:
    """Loss weights that make the KTO paper's ratio (eq. 8) 1.15, inside its advised [1, 4/3], for any balance."""
    if desirable == 0 or undesirable == 0 or desirable == undesirable:
        return 1.0, 1.0
    if desirable < undesirable:
        return 1.15 * undesirable / desirable, 1.0
    return 1.0, desirable / (1.15 * undesirable)
