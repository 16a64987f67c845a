"""SFT recipe: a LoRA adapter trained with TRL's `SFTTrainer` on chat records; read top to bottom: setup, train, save.

    result = sft.train(config, "var/models/demo", records, "var/adapters/t1/support/v4",
                       parent_adapter="var/adapters/t1/support/v3", on_progress=print)

`records` are OpenAI chat records `{"messages": [..., {"role": "assistant", "content": answer}]}`; the loss
falls on the last assistant answer and its end-of-turn token only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import set_seed
from trl import SFTConfig

from trainer import devices
from trainer.config import TrainingConfig
from trainer.examples import DataError, sft_rows
from trainer.progress import ProgressBridge, ProgressCallback
from trainer.recipes import setup
from trainer.recipes.answer_loss import AnswerLossSFTTrainer
from trainer.result import TrainingResult, dataset_hash, library_versions


def train(
    config: TrainingConfig,
    base_model: str | Path,
    records: Iterable[Mapping[str, Any]],
    output_dir: str | Path,
    *,
    parent_adapter: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train an adapter on `records` and save it (PEFT files + the result) into `output_dir`, which must not exist."""
    began = time.perf_counter()
    setup.check_output_free(Path(output_dir))

    # Setup: the data, as TRL's conversational prompt-completion rows, so only the answer is learned.
    rows = sft_rows(list(records)[: config.max_examples])
    if not rows:
        raise DataError("no training examples with a non-empty answer")

    # Setup: the model. The seed goes first: a new adapter's A matrices are drawn when it is created.
    placement = devices.resolve(config.device)
    setup.no_library_progress_bars()  # progress goes through `on_progress`
    set_seed(config.seed)
    base, tokenizer = setup.load_base(base_model, placement)
    model, peft_config, parent, notes = setup.start_adapter(base, config, parent_adapter)

    bridge = ProgressBridge(on_progress)
    with tempfile.TemporaryDirectory(prefix="loraflow-sft-") as scratch, setup.torch_threads(config.cpu_threads):
        args = SFTConfig(**setup.trainer_arguments(config, placement, Path(scratch)), completion_only_loss=True)
        trainer = AnswerLossSFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[bridge],
        )
        setup.quiet(trainer)
        counter = setup.TokenCounter.install(trainer)
        prepared = trainer.train_dataset  # tokenised; examples that truncation left with no answer are gone
        assert isinstance(prepared, Dataset)

        # Train.
        started, cpu_started = time.perf_counter(), time.process_time()
        output = trainer.train()
        duration, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    # Save: the adapter and its lineage, together, or nothing.
    result = TrainingResult(
        method="sft",
        adapter_dir=str(output_dir),
        base_model=str(base_model),
        parent_adapter=parent,
        started_from="parent" if parent else "scratch",
        dataset_hash=dataset_hash(rows),
        num_examples=len(prepared),
        settings=config,
        steps=output.global_step,
        epochs=float(trainer.state.epoch or 0.0),
        final_loss=bridge.losses[-1] if bridge.losses else None,
        mean_loss=output.training_loss,
        tokens=counter.tokens,
        duration_s=duration,
        total_s=time.perf_counter() - began,
        cpu_s=cpu,
        tokens_per_s=counter.tokens / duration if duration > 0 else 0.0,
        device=placement.device,
        dtype=placement.dtype_name,
        versions=library_versions(),
        notes=notes,
    )
    dropped = len(rows) - len(prepared)
    if dropped:
        result.notes.append(f"{dropped} examples dropped: no answer token left within max_seq_length")
    setup.save_adapter(trainer.model, Path(output_dir), result.save)
    return result
