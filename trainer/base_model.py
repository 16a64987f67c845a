"""What `LORAFLOW_BASE_MODEL` names, and making it ready: the default SmolLM2, the tiny random model, or a GGUF file.

The names follow the same rule as the gateway's `gateway/base_model.py` (the trainer never imports the gateway; a
test checks that they agree). `loraflow up` runs `python -m trainer.base_model` in a child process before it starts
the engine; the progress display goes to the user's terminal.

    python -m trainer.base_model [smollm2-135m-instruct | tiny-random | path/to/model.gguf] [--var-dir var]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.preparation import Stages

SMOLLM2 = "smollm2-135m-instruct"  # the default: a real instruction-tuned model, from the package index
TINY = "tiny-random"  # random weights, built in seconds: for fast tests and machines that want no download
BUILT_IN = (SMOLLM2, TINY)


def is_gguf(base_model: str) -> bool:
    return base_model.lower().endswith(".gguf")


def needs_preparation(base_model: str) -> bool:
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


def prepare(base_model: str, var_dir: Path, progress: Stages | None = None) -> Path | str:
    """Make the model's directory if it is one loraflow makes (built once, then found in the cache); returns what
    the engine and the trainer load. `progress` is a `trainer.preparation.Stages`; None shows nothing."""
    from trainer import preparation

    stages: Stages = progress or preparation.Silent()
    path = Path(model_path(base_model, var_dir))
    if base_model == TINY:
        from trainer import tiny_model

        with stages.stage("build the tiny random model"):
            return tiny_model.build(path, log=lambda _: None)
    if base_model == SMOLLM2:
        from trainer import smollm2

        return smollm2.prepare(path, stages)
    if is_gguf(base_model):
        from trainer import gguf_model

        return gguf_model.convert_cached(Path(base_model), path, stages, expected_sha256=file_sha256(base_model))
    return base_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_model", nargs="?", default=SMOLLM2)
    parser.add_argument("--var-dir", type=Path, default=Path("var"))
    args = parser.parse_args(argv)
    from trainer import preparation

    try:
        with preparation.RichStages() as stages:
            path = prepare(args.base_model, args.var_dir, stages)
    except preparation.PreparationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"base model ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
