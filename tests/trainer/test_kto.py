"""The KTO recipe on the tiny model: it trains on thumbs-up and thumbs-down answers and saves a servable adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.trainer.support import chat_records, rated_records
from trainer.config import TrainingConfig
from trainer.examples import DataError
from trainer.recipes import kto, sft

KTO = TrainingConfig(method="kto", max_steps=3, batch_size=4, rank=8, alpha=16, learning_rate=1e-3)


def test_kto_runs_a_few_steps_and_saves_an_adapter(base_model: Path, tmp_path: Path):
    result = kto.train(KTO, base_model, rated_records(24), tmp_path / "adapter")

    assert result.method == "kto" and result.steps == 3
    assert result.num_desirable + result.num_undesirable == 24
    assert result.final_loss is not None
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)
    # Unbalanced ratings are weighted as the KTO paper advises, and the report says so.
    assert any("weighted" in note for note in result.notes)


def test_kto_from_a_parent_ships_only_the_trained_adapter(base_model: Path, tmp_path: Path):
    config = KTO.model_copy(update={"method": "sft", "max_steps": 2})
    sft.train(config, base_model, chat_records("routing", 16), tmp_path / "parent")

    result = kto.train(KTO, base_model, rated_records(16), tmp_path / "child", parent_adapter=tmp_path / "parent")

    assert result.started_from == "parent"
    # TRL keeps a frozen "ref" copy of the parent during training; it must not end up in the version.
    assert sorted(path.name for path in (tmp_path / "child").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "loraflow-training.json",
    ]
    names = load_file(tmp_path / "child" / "adapter_model.safetensors").keys()
    assert names == load_file(tmp_path / "parent" / "adapter_model.safetensors").keys()


def test_kto_measures_the_validation_loss_it_is_given(base_model: Path, tmp_path: Path):
    progress = []

    kto.train(KTO, base_model, rated_records(16), tmp_path / "adapter", on_progress=progress.append,
              eval_records=rated_records(8))  # fmt: skip

    assert any(event.valid_loss is not None for event in progress)


def test_kto_needs_labels(base_model: Path, tmp_path: Path):
    with pytest.raises(DataError, match="label"):
        kto.train(KTO, base_model, chat_records("routing", 4), tmp_path / "adapter")
