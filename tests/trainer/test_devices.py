"""Where a run trains: the device and number format chosen, and (where a GPU is visible) a real run on CUDA.

The choice is tested everywhere with `torch.cuda` stubbed; the `gpu` tests train on a real GPU and are skipped
where there is none (`pytest -m gpu` on a GPU machine runs just them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.support import chat_records, greedy_exact_match, rated_records
from trainer import demo_tasks, devices
from trainer.config import TrainingConfig
from trainer.recipes import kto, setup, sft


def visible_gpu(monkeypatch: pytest.MonkeyPatch, *, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)


def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_without_a_gpu_trains_on_the_cpu_in_float32(monkeypatch):
    no_gpu(monkeypatch)
    assert devices.resolve("auto") == devices.Placement("cpu", torch.float32)
    assert devices.resolve("cpu") == devices.Placement("cpu", torch.float32)


def test_auto_with_a_gpu_trains_on_it_in_bf16(monkeypatch):
    visible_gpu(monkeypatch, bf16=True)
    placement = devices.resolve("auto")
    assert placement == devices.Placement("cuda", torch.bfloat16)
    assert placement.bf16 and placement.dtype_name == "bfloat16"


def test_a_gpu_without_bf16_trains_in_float32_not_fp16(monkeypatch):
    visible_gpu(monkeypatch, bf16=False)
    placement = devices.resolve("cuda")
    assert placement == devices.Placement("cuda", torch.float32) and not placement.bf16


def test_cpu_asked_for_on_a_gpu_machine_stays_on_the_cpu(monkeypatch):
    visible_gpu(monkeypatch, bf16=True)
    assert devices.resolve("cpu") == devices.Placement("cpu", torch.float32)


def test_cuda_asked_for_without_a_gpu_is_an_error_not_a_silent_fallback(monkeypatch):
    no_gpu(monkeypatch)
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        devices.resolve("cuda")


def test_trainer_arguments_follow_the_placement(tmp_path: Path):
    config = TrainingConfig()
    on_gpu = setup.trainer_arguments(config, devices.Placement("cuda", torch.bfloat16), tmp_path)
    assert (on_gpu["use_cpu"], on_gpu["bf16"], on_gpu["fp16"]) == (False, True, False)
    on_old_gpu = setup.trainer_arguments(config, devices.Placement("cuda", torch.float32), tmp_path)
    assert (on_old_gpu["use_cpu"], on_old_gpu["bf16"], on_old_gpu["fp16"]) == (False, False, False)
    on_cpu = setup.trainer_arguments(config, devices.Placement("cpu", torch.float32), tmp_path)
    assert (on_cpu["use_cpu"], on_cpu["bf16"], on_cpu["fp16"]) == (True, False, False)


def learns_routing_and_saves_float32_lora(config: TrainingConfig, base_model: Path, output: Path) -> None:
    """The CPU test that the recipe learns the routing task (test_sft.py), in another placement."""
    result = sft.train(config, base_model, chat_records("routing", 160), output)

    placement = devices.resolve(config.device)
    assert (result.device, result.dtype) == (placement.device, placement.dtype_name)
    assert result.final_loss is not None and result.final_loss < result.mean_loss  # it went down
    saved = load_file(output / "adapter_model.safetensors")
    # A bf16 base model trains float32 LoRA weights (PEFT upcasts them), saved as such: finite, B no longer zero.
    assert all(tensor.dtype == torch.float32 and torch.isfinite(tensor).all() for tensor in saved.values())
    assert all(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)
    # What was trained in bf16 answers in float32 on the CPU, as it will be served.
    held_out = demo_tasks.examples("routing", 60, seed=1)
    assert greedy_exact_match(base_model, output, held_out) >= 0.8


def kto_continues_the_parent(config: TrainingConfig, base_model: Path, tmp_path: Path) -> None:
    sft.train(
        config.model_copy(update={"max_steps": 4, "batch_size": 4}),
        base_model,
        chat_records("routing", 16),
        tmp_path / "p",
    )
    kto_config = config.model_copy(update={"method": "kto", "max_steps": 3, "batch_size": 4})
    result = kto.train(kto_config, base_model, rated_records(24), tmp_path / "child", parent_adapter=tmp_path / "p")

    placement = devices.resolve(config.device)
    assert (result.device, result.dtype) == (placement.device, placement.dtype_name)
    assert (result.started_from, result.steps) == ("parent", 3)
    assert result.final_loss is not None and torch.isfinite(torch.tensor(result.final_loss))
    saved = load_file(tmp_path / "child" / "adapter_model.safetensors")
    assert all(tensor.dtype == torch.float32 and torch.isfinite(tensor).all() for tensor in saved.values())


@pytest.fixture
def bf16_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a GPU changes besides the device, here: bf16 base weights, bf16 autocast, float32 LoRA weights."""
    monkeypatch.setattr(devices, "resolve", lambda device: devices.Placement("cpu", torch.bfloat16))


@pytest.mark.slow
def test_sft_in_bf16_as_on_a_gpu_learns_the_task(bf16_on_the_cpu, base_model: Path, tmp_path: Path):
    learns_routing_and_saves_float32_lora(TrainingConfig(epochs=3, learning_rate=2e-3), base_model, tmp_path / "a")


def test_kto_in_bf16_as_on_a_gpu_continues_its_parent(bf16_on_the_cpu, base_model: Path, tmp_path: Path):
    kto_continues_the_parent(TrainingConfig(), base_model, tmp_path)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


@pytest.mark.gpu
@gpu
def test_sft_on_cuda_learns_the_task(base_model: Path, tmp_path: Path):
    config = TrainingConfig(device="cuda", epochs=3, learning_rate=2e-3)
    learns_routing_and_saves_float32_lora(config, base_model, tmp_path / "a")


@pytest.mark.gpu
@gpu
def test_kto_on_cuda_continues_its_parent(base_model: Path, tmp_path: Path):
    kto_continues_the_parent(TrainingConfig(device="cuda"), base_model, tmp_path)
