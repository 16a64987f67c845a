"""A GGUF written here (the tiny Llama, Q8_0, with the `gguf` package) is converted as `loraflow up` converts any
`LORAFLOW_BASE_MODEL=*.gguf`, then served by vLLM: the engine tokenizes the chat prompt as transformers does on the
GGUF file, and answers greedily with the same tokens."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import torch

from tests.e2e.stack import start_engine
from tests.trainer.gguf_files import write_llama
from trainer import base_model
from trainer.gguf_model import greedy_tokens

pytestmark = pytest.mark.e2e
PROMPTS = ["Hello! Who are you?", "Route this support ticket to one label.", "What is the capital of France?"]


def gguf_answers(gguf: Path, n: int) -> dict[str, tuple[list[int], list[int]]]:
    """(prompt ids, greedy answer ids) per prompt, from transformers reading the GGUF file itself."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    answers = {}
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])
        answers[prompt] = (ids, _without_eos(greedy_tokens(model, tokenizer, prompt, n), tokenizer.eos_token_id))
    return answers


def _without_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


def test_a_gguf_file_is_served_by_vllm_after_conversion_with_the_same_greedy_tokens(tiny_model: Path, tmp_path):
    gguf = write_llama(tiny_model, tmp_path / "Tiny-Llama.Q8_0.gguf")
    converted = Path(base_model.prepare(str(gguf), tmp_path / "var"))
    expected = gguf_answers(gguf, n=16)
    eos = json.loads((converted / "config.json").read_text())["eos_token_id"]

    name = base_model.public_name(str(gguf))
    assert name == "Tiny-Llama.Q8_0"
    process, url = start_engine(converted, tmp_path / "engine", threads_bind="1", served_name=name)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        for prompt, (prompt_ids, answer_ids) in expected.items():
            reply = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=16,
                extra_body={"return_token_ids": True},
            )  # fmt: skip
            assert reply.model_extra["prompt_token_ids"] == prompt_ids, prompt
            assert _without_eos(reply.choices[0].model_extra["token_ids"], eos) == answer_ids, prompt
    finally:
        process.stop()
