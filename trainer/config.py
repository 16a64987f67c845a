"""Per-tenant training settings: one flat pydantic model, stored as JSON, checked against the engine before training."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The projections vLLM can apply LoRA to on Llama-like models. No lm_head, no embeddings, no modules_to_save:
# an adapter that touches them trains fine but the engine refuses it.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """Training settings the engine could not serve, or that contradict each other; raised before any training."""


class TrainingConfig(BaseModel):
    """How one adapter is trained. Defaults learn the demo tasks on SmolLM2-135M and are a sane start for others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What to train
    method: Literal["sft", "kto", "dpo"] = Field(
        default="sft",
        description="Training mode. `sft`: supervised fine-tuning on thumbs-up answers and corrections. `kto`: "
        "Kahneman-Tversky optimisation on thumbs-up (desirable) and thumbs-down (undesirable) answers together. "
        "`dpo`: direct preference optimisation on preferred / non-preferred answer pairs, which fine-tuning jobs bring "
        "(the record's ratings are not pairs, so the nightly runs use `sft` or `kto`).",
    )
    start_from: Literal["production", "scratch"] = Field(
        default="production",
        description="`production`: continue training the alias's current production adapter (a first adapter starts "
        "from scratch). `scratch`: a new adapter from the base model every run. If the production adapter's rank or "
        "target modules differ from these settings, the run starts from scratch so the new settings take effect.",
    )

    # The LoRA adapter
    rank: int = Field(
        default=16, ge=1, le=512, description="LoRA rank `r`. Must not exceed the engine's `--max-lora-rank`."
    )
    alpha: int = Field(
        default=32,
        ge=1,
        description="LoRA scaling numerator: the update is scaled by alpha / rank. Twice the rank is usual.",
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path during training.")
    target_modules: tuple[str, ...] = Field(
        default=DEFAULT_TARGET_MODULES,
        min_length=1,
        description="Module names that get a LoRA adapter. Only modules the engine supports: on vLLM the attention "
        "(q/k/v/o_proj) and MLP (gate/up/down_proj) projections.",
    )

    # The optimisation
    epochs: float = Field(default=3.0, gt=0, description="Passes over the training examples.")
    max_steps: int | None = Field(
        default=None, ge=1, description="If set, stop after this many optimiser steps, whatever `epochs` says."
    )
    learning_rate: float = Field(
        default=1e-3, gt=0, description="Peak learning rate of AdamW, decayed linearly to zero."
    )
    warmup_ratio: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Fraction of the steps spent warming up linearly."
    )
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW weight decay on the LoRA weights.")
    batch_size: int = Field(default=8, ge=1, description="Examples per optimiser step (KTO needs at least 2).")
    max_examples: int = Field(
        default=5000,
        ge=1,
        description="At most this many training examples, taken in the order the dataset gives them (the dataset "
        "builder puts the ones it prefers first).",
    )
    max_seq_length: int = Field(
        default=2048,
        ge=16,
        description="Examples longer than this many tokens are cut, keeping the start; one left with no answer token "
        "is dropped.",
    )
    early_stopping_patience: int | None = Field(
        default=2,
        ge=1,
        description="SFT: stop when the loss on `validation_examples` set-aside training examples has not improved (by "
        "`early_stopping_min_delta`) for this many evaluations, so `epochs` is a ceiling. None: train every epoch.",
    )
    early_stopping_min_delta: float = Field(
        default=0.01,
        ge=0.0,
        description="SFT: the smallest fall of the validation loss (nats per answer token) that counts as improving.",
    )
    validation_examples: int = Field(
        default=32,
        ge=0,
        description="SFT: training examples set aside to measure the validation loss (at most a fifth of them; with "
        "fewer than 40 examples there is no early stopping).",
    )
    # Every 10 steps with a patience of 2: a plateau must last 20 steps. The tiny random model's loss rests that long
    # between drops (stopping after 10 left it at 67% on routing instead of 100%); SmolLM2's falls steadily.
    eval_every_steps: int = Field(
        default=10, ge=1, description="SFT: measure the validation loss every this many steps."
    )
    kto_beta: float = Field(
        default=0.1, gt=0, description="KTO only: how far the adapter may move from the reference (higher = closer)."
    )
    dpo_beta: float = Field(
        default=0.1,
        gt=0,
        le=2,
        description="DPO only: how far the adapter may move from the reference (higher = closer).",
    )
    seed: int = Field(default=0, description="Seed for the adapter's initial weights, data order and dropout.")
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in the backward pass: less memory, about a quarter slower."
    )

    # Where
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="`auto`: CUDA when a GPU is visible (bf16 where supported), else CPU (float32)."
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description="Torch threads while training on CPU; None keeps torch's default (one per core). On a small "
        "machine shared with the engine, 1 avoids threads waiting on each other and can be several times faster.",
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _modules_as_tuple(cls, value: object) -> object:
        # Stored JSON has a list; a tuple keeps the model hashable and frozen.
        return tuple(value) if isinstance(value, list) else value

    @field_validator("target_modules")
    @classmethod
    def _modules_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"target_modules has duplicates: {list(value)}")
        return value

    @model_validator(mode="after")
    def _kto_needs_pairs_in_batch(self) -> TrainingConfig:
        # KTO estimates its KL term from mismatched pairs inside a batch; a batch of one has none.
        if self.method == "kto" and self.batch_size < 2:
            raise ValueError("method 'kto' needs batch_size >= 2")
        return self


def check_engine_limits(config: TrainingConfig, *, max_rank: int, supported_modules: Collection[str]) -> None:
    """Raise `ConfigError` if the engine could not serve an adapter trained with `config`.

    Called before training, so a bad setting costs nothing. `max_rank` is the engine's `--max-lora-rank`,
    `supported_modules` the module names it can apply LoRA to.
    """
    problems = []
    if config.rank > max_rank:
        problems.append(f"rank {config.rank} is above the engine's max LoRA rank {max_rank}")
    unsupported = [name for name in config.target_modules if name not in supported_modules]
    if unsupported:
        problems.append(
            f"target modules {unsupported} are not supported by the engine (supported: {sorted(supported_modules)})"
        )
    if problems:
        raise ConfigError("training settings rejected before training: " + "; ".join(problems))
