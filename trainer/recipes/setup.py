"""The steps every recipe shares: prepare the model and adapter, trainer arguments, train and describe, save."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, set_seed

from trainer import devices
from trainer.config import TrainingConfig
from trainer.devices import Placement
from trainer.progress import ProgressBridge
from trainer.result import TrainingResult, dataset_hash, library_versions

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class Prepared:
    """A run's starting point: where it trains, the model and tokenizer, and the adapter it trains."""

    placement: Placement
    base_model: str
    model: PreTrainedModel | PeftModel  # the base model, with the parent adapter on it when continuing one
    tokenizer: PreTrainedTokenizerBase
    peft_config: LoraConfig | None  # a new adapter, for the trainer to apply; None when continuing the parent
    parent: str | None  # the parent adapter continued; None from scratch
    notes: list[str]  # for the run's result


def prepare(config: TrainingConfig, base_model: str | Path, parent_adapter: str | Path | None) -> Prepared:
    """Place the run, seed it, load the base model, and start a new adapter or continue the parent.

    The seed goes first: a new adapter's A matrices are drawn when it is created.
    """
    placement = devices.resolve(config.device)
    no_library_progress_bars()  # progress goes through the recipe's `on_progress`
    set_seed(config.seed)
    base, tokenizer = load_base(base_model, placement)
    model, peft_config, parent, notes = start_adapter(base, config, parent_adapter)
    return Prepared(placement, str(base_model), model, tokenizer, peft_config, parent, notes)


def load_base(base_model: str | Path, placement: Placement) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=placement.dtype)
    return model, tokenizer


def lora_config(config: TrainingConfig) -> LoraConfig:
    # Exactly what vLLM serves: LoRA on the named projections, nothing saved in full (no modules_to_save).
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def parent_mismatch(parent_adapter: Path, config: TrainingConfig) -> str | None:
    """Why the parent adapter cannot be continued with these settings, or None if it can."""
    saved = json.loads((parent_adapter / "adapter_config.json").read_text())
    wanted = {"r": config.rank, "lora_alpha": config.alpha, "target_modules": sorted(config.target_modules)}
    found = {
        "r": saved.get("r"),
        "lora_alpha": saved.get("lora_alpha"),
        "target_modules": sorted(saved.get("target_modules") or []),
    }
    differ = [f"{key} {found[key]} -> {wanted[key]}" for key in wanted if found[key] != wanted[key]]
    return "; ".join(differ) if differ else None


def start_adapter(
    model: PreTrainedModel, config: TrainingConfig, parent_adapter: str | Path | None
) -> tuple[PreTrainedModel | PeftModel, LoraConfig | None, str | None, list[str]]:
    """Continue `parent_adapter` or start a new one, as `config.start_from` says and the parent allows.

    Returns the model to hand to the trainer, the `LoraConfig` for the trainer to apply (None when continuing),
    the parent actually continued (None from scratch), and notes for the run's result.
    """
    notes: list[str] = []
    if parent_adapter is not None and config.start_from == "production":
        parent = Path(parent_adapter)
        mismatch = parent_mismatch(parent, config)
        if mismatch is None:
            return PeftModel.from_pretrained(model, str(parent), is_trainable=True), None, str(parent), notes
        notes.append(f"started from scratch: the parent adapter's settings differ from this run's ({mismatch})")
    elif config.start_from == "production":
        notes.append("started from scratch: there is no production adapter yet")
    return model, lora_config(config), None, notes


def trainer_arguments(config: TrainingConfig, placement: Placement, scratch_dir: Path) -> dict[str, Any]:
    """Keyword arguments shared by `SFTConfig` and `KTOConfig`: the tenant's settings in transformers' terms."""
    return {
        "output_dir": str(scratch_dir),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps or -1,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "linear",
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a fraction of the steps
        "weight_decay": config.weight_decay,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": 1,
        "max_length": config.max_seq_length,
        "seed": config.seed,
        "data_seed": config.seed,
        "use_cpu": placement.device == "cpu",
        "bf16": placement.bf16,
        "fp16": False,
        # TRL turns checkpointing on by default; on small models it only costs time.
        "gradient_checkpointing": config.gradient_checkpointing,
        # Every step's loss feeds the progress events and the final/mean loss; the log itself is a few floats.
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def no_library_progress_bars() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def quiet(trainer) -> None:
    """Drop the callback that prints every log line; progress goes through our own callback instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


class TokenCounter:
    """Wraps a data collator and counts the non-padding tokens it hands to the model in training, for tokens/s."""

    def __init__(self, collate, training=lambda: True) -> None:
        self.collate = collate
        self.training = training
        self.tokens = 0

    def __call__(self, features):
        batch = self.collate(features)
        if not self.training():  # the validation loss's batches (early stopping) are not training throughput
            return batch
        mask = batch.get("attention_mask")
        # Padding-free batches have no attention mask: every token in them is real.
        self.tokens += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        return batch

    @classmethod
    def install(cls, trainer) -> TokenCounter:
        counter = cls(trainer.data_collator, lambda: trainer.model.training)
        trainer.data_collator = counter
        return counter


def train_and_describe(
    trainer: Any,
    bridge: ProgressBridge,
    prepared: Prepared,
    *,
    method: Literal["sft", "kto", "dpo"],
    config: TrainingConfig,
    rows: list[dict[str, Any]],
    output_dir: str | Path,
    began: float,
) -> tuple[TrainingResult, int]:
    """Run `trainer.train()`, timed and with its tokens counted, and describe the adapter it made.

    Returns the result (lineage and figures; the recipe adds what is its own) and the number of examples the
    trainer dropped while preparing `rows` (truncation can leave one with nothing to learn).
    """
    counter = TokenCounter.install(trainer)
    dataset = trainer.train_dataset  # tokenised, as trained on
    started, cpu_started = time.perf_counter(), time.process_time()
    output = trainer.train()
    duration, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    result = TrainingResult(
        method=method,
        adapter_dir=str(output_dir),
        base_model=prepared.base_model,
        parent_adapter=prepared.parent,
        started_from="parent" if prepared.parent else "scratch",
        dataset_hash=dataset_hash(rows),
        num_examples=len(dataset),
        settings=config,
        steps=output.global_step,
        epochs=float(trainer.state.epoch or 0.0),
        final_loss=bridge.losses[-1] if bridge.losses else None,
        mean_loss=output.training_loss,
        losses=list(bridge.losses),
        tokens=counter.tokens,
        duration_s=duration,
        total_s=time.perf_counter() - began,
        cpu_s=cpu,
        tokens_per_s=counter.tokens / duration if duration > 0 else 0.0,
        device=prepared.placement.device,
        dtype=prepared.placement.dtype_name,
        versions=library_versions(),
        notes=prepared.notes,
    )
    return result, len(rows) - len(dataset)


def evaluation_arguments(config: TrainingConfig, validation: list[dict[str, Any]]) -> dict[str, Any]:
    """TRL arguments that measure the loss on the validation rows ten times over the run, if there are any (DPO, KTO:
    their trainers take the rows as built; SFT's tokenises them, see `measure_validation_loss`)."""
    if not validation:
        return {"eval_strategy": "no"}
    return {"eval_strategy": "steps", "eval_steps": 0.1, "per_device_eval_batch_size": config.batch_size}


def measure_validation_loss(trainer: Any, rows: list[dict[str, Any]], batch_size: int) -> None:
    """Measure the loss on `rows` ten times over the run (a fine-tuning job's validation file): each measure reaches
    `on_progress` as `valid_loss`. Set on a built SFT trainer, which tokenises `rows` as it did the training rows."""
    from transformers.trainer_utils import IntervalStrategy

    if not rows:
        return
    trainer.eval_dataset = trainer._prepare_dataset(
        Dataset.from_list(rows), trainer.processing_class, trainer.args, False, None, "validation"
    )
    trainer.args.eval_strategy = IntervalStrategy.STEPS
    trainer.args.eval_steps = 0.1  # a fraction of the steps: read when training starts
    trainer.args.per_device_eval_batch_size = batch_size
    trainer.args.prediction_loss_only = True


def check_output_free(output_dir: Path) -> None:
    """Fail before training, not after, when the version directory is taken: adapter versions are immutable."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} exists and is not empty; adapter versions are immutable")


def save_adapter(model: Any, output_dir: Path, write_extra) -> Path:
    """Save the trained adapter as PEFT files into `output_dir`, atomically: a killed run leaves nothing there.

    `write_extra(staging_dir)` adds files (the training result) before the directory appears.
    """
    output_dir = Path(output_dir)
    check_output_free(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}-"))
    try:
        # Only the trained adapter: KTO keeps a frozen "ref" copy alongside it, which must not ship.
        model.save_pretrained(str(staging), selected_adapters=["default"], safe_serialization=True)
        missing = [name for name in ADAPTER_FILES if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(f"PEFT did not write {missing}")
        write_extra(staging)
        if output_dir.exists():
            output_dir.rmdir()
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Train with `count` torch threads, then put the process's setting back (the gateway may embed with torch)."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
