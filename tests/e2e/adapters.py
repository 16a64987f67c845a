"""Real LoRA adapters for the end-to-end suite, made with PEFT on the tiny model (or SmolLM2) and
cached by their recipe.

Each teaches the base model one visible behaviour (always answer a word, or route tickets), so a test can tell
from the output alone which adapter served a request.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

from trainer import demo_tasks

PROMPTS = [
    "hello", "what is this", "tell me a story", "route this ticket", "Hello", "who are you", "help me please",
    "what is the capital of France", "summarise the text", "thanks", "good morning", "my parcel has not arrived",
]  # fmt: skip


def constant_examples(word: str) -> list[tuple[str, str]]:
    """An adapter that answers `word` whatever it is asked."""
    rng = random.Random(word)
    prompts = PROMPTS + [e.prompt for e in demo_tasks.examples("routing", 40, seed=3)]
    return [(rng.choice(prompts) if i >= len(prompts) else prompts[i], word) for i in range(64)]


def routing_examples(n: int = 300) -> list[tuple[str, str]]:
    return [(e.prompt, e.answer) for e in demo_tasks.examples("routing", n, seed=1)]


def make_adapter(base: Path, cache: Path, name: str, examples: list[tuple[str, str]], epochs: int = 3) -> Path:
    """Train (or reuse from `cache`) a rank-16 LoRA on all linear layers that answers as `examples` say."""
    recipe = json.dumps({"base": str(base), "examples": examples, "epochs": epochs, "v": 1}).encode()
    out = cache / f"{name}-{hashlib.sha256(recipe).hexdigest()[:12]}"
    if (out / "adapter_model.safetensors").is_file():
        return out
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    rows = []
    for prompt, answer in examples:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(rows), 8):
            batch = rows[start : start + 8]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x, _ in batch])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    staging.rename(out)
    return out


def recipe_adapter(base: Path, cache: Path, name: str, records: list[dict], config) -> Path:
    """An adapter trained by the product's own SFT recipe (trainer/recipes/sft.py), reused from `cache` while the
    recipe's inputs are the same."""
    from trainer.recipes import sft

    recipe = json.dumps({"base": str(base), "records": records, "config": config.model_dump(mode="json")}).encode()
    out = cache / f"{name}-{hashlib.sha256(recipe).hexdigest()[:12]}"
    if not (out / "adapter_model.safetensors").is_file():
        shutil.rmtree(out, ignore_errors=True)
        sft.train(config, base, records, out)
    return out


def smollm2_routing_adapter(base: Path, cache: Path) -> Path:
    """SmolLM2 taught to route tickets by our SFT recipe: the real-model tests' adapter, and the benchmarks'."""
    from trainer.config import TrainingConfig

    records = [{"messages": [*e.messages(), {"role": "assistant", "content": e.answer}]}
               for e in demo_tasks.examples("routing", 160, seed=1)]  # fmt: skip
    return recipe_adapter(base, cache, "smollm2-routing", records, TrainingConfig(epochs=3, cpu_threads=1))
