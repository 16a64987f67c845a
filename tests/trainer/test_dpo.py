"""The DPO recipe on the tiny model: it trains on preference pairs, comes to prefer the preferred answers, measures
the validation loss as it goes, and saves a servable adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.trainer.support import chat_records
from trainer.config import TrainingConfig
from trainer.examples import DataError
from trainer.recipes import dpo, sft

DPO = TrainingConfig(method="dpo", epochs=3, batch_size=4, rank=8, alpha=16, learning_rate=5e-3, cpu_threads=1)
PROMPTS = ["hello", "who are you", "what is this", "help me please", "good morning", "thanks"]


def pairs(prompts: list[str] = PROMPTS, preferred: str = "ALPHA", other: str = "BRAVO") -> list[dict]:
    return [
        {
            "input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": preferred}],
            "non_preferred_output": [{"role": "assistant", "content": other}],
        }
        for prompt in prompts
    ]


def preference(base_model: Path, adapter: Path | None, prompt: str, first: str, second: str) -> float:
    """log p(first) - log p(second) as the answer to `prompt`."""
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    scores = []
    for answer in (first, second):
        prefix = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               tokenize=False)  # fmt: skip
        prompt_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt_ids) - 1 : -1]
        scores.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(answer_ids)[:, None]).sum().item())
    return scores[0] - scores[1]


def test_dpo_comes_to_prefer_the_preferred_answers_and_saves_an_adapter(base_model: Path, tmp_path: Path):
    progress = []

    result = dpo.train(DPO, base_model, pairs(), tmp_path / "adapter", on_progress=progress.append,
                       eval_records=pairs(PROMPTS[:2]))  # fmt: skip

    assert result.method == "dpo" and result.steps == 6 and result.final_loss is not None
    assert result.final_loss < 0.69  # below log 2: the pairs are told apart
    assert any(event.valid_loss is not None for event in progress)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["peft_type"] == "LORA"
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)
    before = preference(base_model, None, "hello", "ALPHA", "BRAVO")
    after = preference(base_model, tmp_path / "adapter", "hello", "ALPHA", "BRAVO")
    assert after > before + 1.0


def test_dpo_from_a_parent_ships_only_the_trained_adapter(base_model: Path, tmp_path: Path):
    parent_config = DPO.model_copy(update={"method": "sft", "max_steps": 2})
    sft.train(parent_config, base_model, chat_records("routing", 8), tmp_path / "parent")

    result = dpo.train(DPO.model_copy(update={"max_steps": 2}), base_model, pairs(), tmp_path / "child",
                       parent_adapter=tmp_path / "parent")  # fmt: skip

    assert result.started_from == "parent"
    names = load_file(tmp_path / "child" / "adapter_model.safetensors").keys()
    assert names == load_file(tmp_path / "parent" / "adapter_model.safetensors").keys()


def test_dpo_needs_pairs(base_model: Path, tmp_path: Path):
    with pytest.raises(DataError, match="`chosen` must be one assistant message"):
        dpo.train(DPO, base_model, [{"prompt": [{"role": "user", "content": "hi"}]}], tmp_path / "adapter")
