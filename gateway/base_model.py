"""What `LORAFLOW_BASE_MODEL` names: the directory the engine loads and the name clients use.

The trainer applies the same rule in `trainer/base_model.py` (neither imports the other; a test checks that they
agree). Built-in names live under `var/models/<name>`; a local `.gguf` file is converted once into
`var/models/<file stem>-<first 12 hex of its sha256>` and served under its file stem; anything else (a Hugging Face
id, a directory) is passed to the engine as it is.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"  # the default: a real instruction-tuned model, from the package index
TINY = "tiny-random"  # random weights, built in seconds: for fast tests and machines that want no download
BUILT_IN = (SMOLLM2, TINY)


def is_gguf(base_model: str) -> bool:
    return base_model.lower().endswith(".gguf")


def needs_preparation(base_model: str) -> bool:
    """Whether `loraflow up` must make the model's directory before the engine can load it."""
    return base_model in BUILT_IN or is_gguf(base_model)


def model_path(base_model: str, var_dir: Path) -> str:
    """The directory (or Hugging Face id) the engine and the trainer load."""
    if base_model in BUILT_IN:
        return str(var_dir / "models" / base_model)
    if is_gguf(base_model):
        return str(var_dir / "models" / f"{Path(base_model).name[: -len('.gguf')]}-{file_sha256(base_model)[:12]}")
    return base_model


def public_name(base_model: str) -> str:
    """The name clients send as `model` for the base model."""
    if base_model in BUILT_IN:
        return base_model
    if is_gguf(base_model):
        return Path(base_model).name[: -len(".gguf")]
    return base_model.rstrip("/").rsplit("/", 1)[-1]


def file_sha256(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"LORAFLOW_BASE_MODEL names a GGUF file that does not exist: {path}")
    stat = file.stat()
    return _sha256(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too: a file replaced in place gets hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()
