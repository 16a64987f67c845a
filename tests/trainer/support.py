"""Helpers for the trainer's tests: demo records in the record's export formats, and greedy exact match."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer import demo_tasks


def chat_records(task: str, n: int, seed: int = 0) -> list[dict]:
    """Demo examples as the record exports them: OpenAI chat format, the right answer last."""
    return [
        {"messages": [*example.messages(), {"role": "assistant", "content": example.answer}]}
        for example in demo_tasks.examples(task, n, seed)
    ]


def rated_records(n: int) -> list[dict]:
    """Routing answers, right ones rated up and wrong ones rated down, in TRL's conversational KTO format."""
    rng = random.Random(0)
    records = []
    for example in demo_tasks.examples("routing", n):
        right = rng.random() < 0.4
        answer = example.answer if right else rng.choice([x for x in demo_tasks.ROUTING_LABELS if x != example.answer])
        records.append(
            {"prompt": example.messages(), "completion": [{"role": "assistant", "content": answer}], "label": right}
        )
    return records


def greedy_exact_match(base_model: Path, adapter: Path | None, examples: list[demo_tasks.Example]) -> float:
    """Share of `examples` answered exactly right by greedy decoding (transformers `generate`, batched)."""
    tokenizer = AutoTokenizer.from_pretrained(base_model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(base_model)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    batch = tokenizer.apply_chat_template(
        [example.messages() for example in examples],
        add_generation_prompt=True,
        padding=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=32, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(answer.strip() == example.answer for answer, example in zip(answers, examples, strict=True)) / len(
        examples
    )
