"""The SFT recipe on the tiny model: what it trains, what it saves, and that it learns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.trainer.support import chat_records, greedy_exact_match
from trainer import demo_tasks
from trainer.config import DEFAULT_TARGET_MODULES, TrainingConfig
from trainer.progress import TrainingProgress
from trainer.recipes import setup, sft
from trainer.result import TrainingResult

# Four steps on every example: no validation slice set aside (early stopping is tested in test_early_stopping.py).
SHORT = TrainingConfig(max_steps=4, batch_size=4, learning_rate=2e-3, rank=8, alpha=16, early_stopping_patience=None)


@dataclass
class ShortRun:
    result: TrainingResult
    output: Path
    model: torch.nn.Module  # the model object that was trained, base weights and LoRA together
    events: list[TrainingProgress]


@pytest.fixture(scope="module")
def short_run(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> ShortRun:
    """One short run, keeping the model object it trained (its base weights must be untouched) and its events."""
    loaded = []
    events: list[TrainingProgress] = []

    def keep(*args, **kwargs):
        model, tokenizer = original(*args, **kwargs)
        loaded.append(model)
        return model, tokenizer

    original = setup.load_base
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setup, "load_base", keep)
        output = tmp_path_factory.mktemp("sft") / "adapter"
        result = sft.train(SHORT, base_model, chat_records("routing", 40), output, on_progress=events.append)
    return ShortRun(result, output, loaded[0], events)


def test_lora_weights_change_and_base_weights_do_not(short_run, base_model: Path):
    output, trained = short_run.output, short_run.model
    fresh = AutoModelForCausalLM.from_pretrained(base_model).state_dict()

    base_after = {
        name.replace("base_model.model.", "").replace(".base_layer", ""): tensor
        for name, tensor in trained.state_dict().items()
        if "lora_" not in name
    }
    assert base_after.keys() == fresh.keys()
    for name, tensor in fresh.items():
        assert torch.equal(base_after[name], tensor), f"base weight {name} changed"

    saved = load_file(output / "adapter_model.safetensors")
    # PEFT starts every B at zero, so a non-zero B is a trained one.
    lora_b = {name: tensor for name, tensor in saved.items() if "lora_B" in name}
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b.values())


def test_saved_adapter_is_what_vllm_loads_with_the_configured_settings(short_run):
    output = short_run.output
    assert (output / "adapter_config.json").is_file() and (output / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((output / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA"
    assert adapter_config["r"] == SHORT.rank
    assert adapter_config["lora_alpha"] == SHORT.alpha
    assert sorted(adapter_config["target_modules"]) == sorted(DEFAULT_TARGET_MODULES)
    assert not adapter_config.get("modules_to_save")

    names = load_file(output / "adapter_model.safetensors").keys()
    assert all(".lora_A." in name or ".lora_B." in name for name in names)
    # Every targeted projection of both layers has its A and B.
    assert len(names) == 2 * 2 * len(DEFAULT_TARGET_MODULES)
    assert {name.split(".")[-3] for name in names} == set(DEFAULT_TARGET_MODULES)


def test_result_carries_the_lineage_and_is_saved_next_to_the_adapter(short_run, base_model: Path):
    result, output = short_run.result, short_run.output
    assert TrainingResult.load(output) == result
    assert result.base_model == str(base_model)
    assert result.parent_adapter is None and result.started_from == "scratch"
    assert result.dataset_hash.startswith("sha256:") and result.num_examples == 40
    assert result.settings == SHORT
    assert result.steps == 4 and result.final_loss is not None and result.mean_loss is not None
    assert result.tokens > 0 and result.tokens_per_s > 0
    assert (result.device, result.dtype) == ("cpu", "float32")


def test_progress_reports_every_step_with_its_loss(short_run):
    events = short_run.events
    assert [event.step for event in events] == [0, 1, 2, 3, 4]
    assert all(event.total_steps == 4 for event in events)
    assert events[0].loss is None and all(event.loss is not None for event in events[1:])
    assert events[-1].fraction == 1.0


def test_training_learns_the_routing_task(base_model: Path, tmp_path: Path):
    held_out = demo_tasks.examples("routing", 60, seed=1)
    before = greedy_exact_match(base_model, None, held_out)

    config = TrainingConfig(epochs=3, learning_rate=2e-3)
    sft.train(config, base_model, chat_records("routing", 160), tmp_path / "adapter")
    after = greedy_exact_match(base_model, tmp_path / "adapter", held_out)

    assert before < 0.3
    assert after >= 0.8, f"held-out exact match {before:.2f} -> {after:.2f}"


def test_same_seed_gives_the_same_adapter(base_model: Path, tmp_path: Path):
    config = TrainingConfig(max_steps=3, batch_size=4, rank=8, alpha=16, seed=7)
    records = chat_records("routing", 24)
    sft.train(config, base_model, records, tmp_path / "a")
    sft.train(config, base_model, records, tmp_path / "b")
    a, b = (
        load_file(tmp_path / "a" / "adapter_model.safetensors"),
        load_file(tmp_path / "b" / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_continues_the_parent_adapter_when_its_settings_match(short_run, base_model: Path, tmp_path: Path):
    parent = short_run.output
    result = sft.train(
        SHORT.model_copy(update={"max_steps": 1}),
        base_model,
        chat_records("routing", 8),
        tmp_path / "c",
        parent_adapter=parent,
    )
    assert result.started_from == "parent" and result.parent_adapter == str(parent)
    # Continued, not restarted: the first step's loss is already the parent's low-ish loss, and B is not zero-based.
    parent_b = load_file(parent / "adapter_model.safetensors")
    child_b = load_file(tmp_path / "c" / "adapter_model.safetensors")
    name = next(name for name in parent_b if "lora_B" in name)
    assert torch.allclose(parent_b[name], child_b[name], atol=0.05) and not torch.equal(parent_b[name], child_b[name])


def test_starts_from_scratch_when_the_rank_changed(short_run, base_model: Path, tmp_path: Path):
    parent = short_run.output
    config = SHORT.model_copy(update={"max_steps": 1, "rank": 16, "alpha": 32})
    result = sft.train(config, base_model, chat_records("routing", 8), tmp_path / "d", parent_adapter=parent)
    assert result.started_from == "scratch" and result.parent_adapter is None
    assert any("r 8 -> 16" in note for note in result.notes)
    assert json.loads((tmp_path / "d" / "adapter_config.json").read_text())["r"] == 16


def test_a_run_that_fails_leaves_no_adapter_behind(base_model: Path, tmp_path: Path):
    def stop_at_step_two(progress: TrainingProgress) -> None:
        if progress.step == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        sft.train(SHORT, base_model, chat_records("routing", 16), tmp_path / "e", on_progress=stop_at_step_two)
    assert not (tmp_path / "e").exists()
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_an_existing_version(short_run, base_model: Path):
    output = short_run.output
    with pytest.raises(FileExistsError):
        sft.train(SHORT.model_copy(update={"max_steps": 1}), base_model, chat_records("routing", 8), output)


def test_rich_progress_bar_draws_the_events(short_run):
    from io import StringIO

    from rich.console import Console

    from trainer.progress import RichProgressBar

    console = Console(file=StringIO(), force_terminal=True, width=100)
    with RichProgressBar("training routing@1", console=console) as bar:
        for event in short_run.events:
            bar(event)
    drawn = console.file.getvalue()
    assert "training routing@1" in drawn and "4/4" in drawn and f"{short_run.events[-1].loss:.4f}" in drawn


def test_vllm_accepts_the_saved_adapter(short_run):
    """vLLM's own adapter check, where vLLM is installed (no engine is started)."""
    pytest.importorskip("vllm")
    from vllm.config.lora import LoRAConfig
    from vllm.lora.peft_helper import PEFTHelper

    helper = PEFTHelper.from_local_dir(str(short_run.output), max_position_embeddings=4096)
    helper.validate_legal(LoRAConfig(max_lora_rank=16, max_loras=4))
    assert (helper.r, helper.lora_alpha, helper.modules_to_save) == (SHORT.rank, SHORT.alpha, None)
