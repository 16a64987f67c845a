"""`LORAFLOW_BASE_MODEL` means the same to the gateway and the trainer: the same directory, the same public name.

Each side has its own copy of the rule (gateway/base_model.py, trainer/base_model.py: neither imports the other),
so this checks them against each other, and against what the README promises, for every kind of value.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings
from trainer.settings import TrainerSettings

GGUF_BYTES = b"GGUF not really, but a file with a hash"
GGUF_HASH = "5ff77025a35b"  # sha256(GGUF_BYTES)[:12]


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "Qwen2-0.5B-Instruct.Q8_0.gguf"
    path.parent.mkdir()
    path.write_bytes(GGUF_BYTES)
    return path


def both(base_model: str, var_dir: Path, served_model_name: str = "") -> tuple[Settings, TrainerSettings]:
    common = {"base_model": base_model, "var_dir": var_dir, "served_model_name": served_model_name}
    return Settings(admin_key="a", secret_key="s", **common), TrainerSettings(**common)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "path", "name"),
    [
        ("smollm2-135m-instruct", "VAR/models/smollm2-135m-instruct", "smollm2-135m-instruct"),
        ("tiny-random", "VAR/models/tiny-random", "tiny-random"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
        ("/srv/models/llama-3.2-1b/", "/srv/models/llama-3.2-1b/", "llama-3.2-1b"),
        ("models/my-model", "models/my-model", "my-model"),
        ("GGUF", f"VAR/models/Qwen2-0.5B-Instruct.Q8_0-{GGUF_HASH}", "Qwen2-0.5B-Instruct.Q8_0"),
    ],
)
def test_the_gateway_and_the_trainer_agree_on_every_kind_of_value(value, path, name, gguf_file, tmp_path):
    var_dir = tmp_path / "var"
    value = str(gguf_file) if value == "GGUF" else value
    gateway, trainer = both(value, var_dir)
    assert gateway.base_model_path == trainer.base_model_path == path.replace("VAR", str(var_dir))
    assert gateway.public_model_name == trainer.public_model_name == name
    assert both(value, var_dir, "my-name")[0].public_model_name == both(value, var_dir, "my-name")[1].public_model_name


def test_the_default_is_smollm2_and_an_uppercase_gguf_suffix_is_a_gguf(gguf_file, tmp_path):
    assert Settings(admin_key="a", secret_key="s").base_model == TrainerSettings().base_model == "smollm2-135m-instruct"
    shouting = gguf_file.with_name("MODEL.GGUF")
    shouting.write_bytes(GGUF_BYTES)
    gateway, trainer = both(str(shouting), tmp_path)
    assert gateway.base_model_path == trainer.base_model_path == str(tmp_path / "models" / f"MODEL-{GGUF_HASH}")
    assert gateway.base_model_needs_preparation


def test_a_gguf_file_that_changes_gets_a_new_directory(gguf_file, tmp_path):
    before = both(str(gguf_file), tmp_path)[0].base_model_path
    gguf_file.write_bytes(GGUF_BYTES + b" and more")
    gateway, trainer = both(str(gguf_file), tmp_path)
    assert gateway.base_model_path == trainer.base_model_path != before


def test_a_missing_gguf_file_is_named_in_the_error(tmp_path):
    for settings in both(str(tmp_path / "nowhere.gguf"), tmp_path):
        with pytest.raises(FileNotFoundError, match=r"nowhere\.gguf"):
            _ = settings.base_model_path
