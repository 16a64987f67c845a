"""The CPU loss that scores only answer positions, and runs the batch's shared prompt prefix once, equals TRL's loss
on the same batch, gradients included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from tests.trainer.support import chat_records
from trainer import devices
from trainer.config import TrainingConfig
from trainer.examples import sft_rows
from trainer.recipes import answer_loss, setup
from trainer.recipes.answer_loss import AnswerLossSFTTrainer


@pytest.mark.parametrize(
    ("records", "shares_a_prefix"),
    [
        (chat_records("extraction", 8), True),  # one instruction for all: the shared prefix runs once
        ([*chat_records("extraction", 4), *chat_records("routing", 4)], False),  # different instructions
    ],
)
def test_answer_only_loss_equals_trls_loss_and_gradients(records, shares_a_prefix, base_model: Path, tmp_path: Path):
    config = TrainingConfig(rank=8, alpha=16, batch_size=8)
    placement = devices.resolve("cpu")
    model, tokenizer = setup.load_base(base_model, placement)
    trainer = AnswerLossSFTTrainer(
        model=model,
        args=SFTConfig(**setup.trainer_arguments(config, placement, tmp_path), completion_only_loss=True),
        train_dataset=Dataset.from_list(sft_rows(records)),
        processing_class=tokenizer,
        peft_config=setup.lora_config(config),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    shared = answer_loss.shared_prefix_length(batch["input_ids"], batch["labels"], batch["attention_mask"])
    assert (shared >= answer_loss.MIN_SHARED_PREFIX) == shares_a_prefix, shared
    peft_model = trainer.model
    # A non-zero B, so the adapter takes part in the forward pass.
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)
    lora = [p for p in peft_model.parameters() if p.requires_grad]

    ours = trainer.compute_loss(peft_model, dict(batch), num_items_in_batch=None)
    ours_grads = torch.autograd.grad(ours, lora)
    trls = SFTTrainer.compute_loss(trainer, peft_model, dict(batch), num_items_in_batch=None)
    trls_grads = torch.autograd.grad(trls, lora)

    assert torch.allclose(ours, trls, rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(ours_grads, trls_grads, strict=True))
