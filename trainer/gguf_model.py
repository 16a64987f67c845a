"""Convert a GGUF file (the llama.cpp / Ollama format) into a Hugging Face directory that vLLM, transformers and PEFT
load, once: the directory carries a marker with the file's sha256, so a later run finds it and does nothing.

transformers reads the GGUF (config, tokenizer with its chat template, weights dequantized to float32); the weights
are then put into a plain model of the same config and saved as safetensors, since transformers will not save a
model it loaded from GGUF. The check: the converted directory, loaded afresh, must answer a short prompt greedily
with exactly the tokens the GGUF model gave (and contain an expected phrase, when one is given).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainer.preparation import PreparationError, Stages, Step

MARKER = "loraflow-model.json"
FORMAT_VERSION = 3  # 2: sampling defaults written into generation_config.json; 3: with do_sample

# Architectures whose Hugging Face modules carry the projection names vLLM applies LoRA to (q/k/v/o_proj,
# gate/up/down_proj), and which transformers reads from GGUF. Others (phi3's fused qkv, gpt2, ...) would convert
# but no adapter could be served on them.
ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
# The weight formats the gguf package dequantizes and llama.cpp / Ollama commonly ship.
QUANTIZATIONS = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


@dataclass(frozen=True)
class Check:
    """The short greedy generation that checks a conversion."""

    prompt: str = "Hello! Who are you?"
    expect: str | None = None  # a phrase the answer must contain (for a model whose answer we know)
    max_new_tokens: int = 12


# A GGUF carries no sampling defaults; vLLM reads these from generation_config.json for requests that set none.
Sampling = dict[str, float | bool]


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str
    quantizations: tuple[str, ...]
    tensors: int


def inspect(path: Path) -> GGUFInfo:
    """The file's architecture and weight formats, read from its header; raises if loraflow cannot serve it."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as error:  # a truncated or foreign file: gguf raises ValueError, struct.error, ...
        raise PreparationError(f"{path} is not a readable GGUF file: {error}") from None
    architecture = _field(reader, "general.architecture") or "?"
    name = _field(reader, "general.name") or path.stem
    formats = tuple(sorted({tensor.tensor_type.name for tensor in reader.tensors}))
    if architecture not in ARCHITECTURES:
        raise PreparationError(
            f"{path.name}: architecture {architecture!r} is not supported; loraflow serves GGUF models of the "
            f"{', '.join(ARCHITECTURES)} architectures (their LoRA targets are the ones vLLM serves)"
        )
    unsupported = [f for f in formats if f not in QUANTIZATIONS]
    if unsupported:
        raise PreparationError(
            f"{path.name}: weight format(s) {', '.join(unsupported)} cannot be converted; supported: "
            f"{', '.join(QUANTIZATIONS)} (re-quantize the model, e.g. to Q8_0 or Q4_K, with llama.cpp)"
        )
    return GGUFInfo(architecture, name, formats, len(reader.tensors))


def _field(reader, key: str) -> str | None:
    field = reader.fields.get(key)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def is_converted(out: Path, sha256: str) -> bool:
    marker = out / MARKER
    if not marker.is_file():
        return False
    saved = json.loads(marker.read_text())
    return saved.get("source_sha256") == sha256 and saved.get("format_version") == FORMAT_VERSION


def convert_cached(
    gguf_path: Path,
    out: Path,
    stages: Stages,
    *,
    expected_sha256: str,
    check: Check | None = None,
    sampling: Sampling | None = None,
) -> Path:
    """`out`, converted from `gguf_path` unless already there; the file must have `expected_sha256`."""
    if is_converted(out, expected_sha256):
        return out
    size = gguf_path.stat().st_size
    with stages.stage("check the file's sha256", total=size) as step:
        actual = _sha256(gguf_path, step)
    if actual != expected_sha256:
        raise PreparationError(f"{gguf_path} has sha256 {actual}, expected {expected_sha256}: a damaged or other file")
    return convert(gguf_path, out, stages, check=check or Check(), sha256=actual, sampling=sampling)


def convert(
    gguf_path: Path, out: Path, stages: Stages, *, check: Check, sha256: str, sampling: Sampling | None = None
) -> Path:
    """Convert `gguf_path` into the Hugging Face directory `out` (replaced whole, or left as it was on failure)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()  # the steps below are the progress display
    info = inspect(gguf_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        staging = Path(tmp) / "model"
        with stages.stage(f"dequantise ({', '.join(info.quantizations)})", total=info.tensors) as s:
            folder, name = str(gguf_path.parent), gguf_path.name
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            with _tensor_progress(s):
                gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
            expected = greedy_tokens(gguf_model, tokenizer, check.prompt, check.max_new_tokens)

        with stages.stage("save as safetensors"):
            # A plain model of the same config: transformers refuses to save one it loaded from GGUF.
            model = AutoModelForCausalLM.from_config(gguf_model.config, dtype=torch.float32)
            model.load_state_dict(gguf_model.state_dict(), assign=True)
            del gguf_model
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            _plain_config(staging / "config.json")
            del model

        with stages.stage("check a greedy answer") as step:
            model = AutoModelForCausalLM.from_pretrained(staging, dtype=torch.float32)
            converted = greedy_tokens(model, AutoTokenizer.from_pretrained(staging), check.prompt, check.max_new_tokens)
            answer = str(tokenizer.decode(converted, skip_special_tokens=True)).strip()
            step.note(repr(answer[:40]))
            if converted != expected:
                raise PreparationError(
                    f"the converted model answers {answer!r}, the GGUF model "
                    f"{str(tokenizer.decode(expected, skip_special_tokens=True)).strip()!r}: conversion is wrong"
                )
            if check.expect and check.expect.lower() not in answer.lower():
                raise PreparationError(f"the model answers {check.prompt!r} with {answer!r}, not {check.expect!r}")

        if sampling:  # after the greedy check, which sampling defaults would only draw warnings from
            _merge_json(staging / "generation_config.json", sampling)
        marker = {
            "format_version": FORMAT_VERSION,
            "source": gguf_path.name,
            "source_sha256": sha256,
            "architecture": info.architecture,
            "name": info.name,
            "quantizations": list(info.quantizations),
            "check": {"prompt": check.prompt, "answer": answer},
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return out


def greedy_tokens(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """A transformers model's greedy answer to one user message, as token ids: the conversion's check, and the
    reference the tests hold vLLM's answers to."""
    import torch

    messages = [{"role": "user", "content": prompt}]
    if tokenizer.chat_template:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    batch = torch.tensor([list(ids)])
    with torch.inference_mode():
        output = model.generate(
            batch,
            attention_mask=torch.ones_like(batch),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return output[0, batch.shape[1] :].tolist()


def _plain_config(path: Path) -> None:
    """Drop what the GGUF loading left in the config: with `quantization_config` vLLM looks for GGUF weights."""
    config = json.loads(path.read_text())
    for key in ("quantization_config", "_model_name_or_path"):
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _merge_json(path: Path, values: dict) -> None:
    saved = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**saved, **values}, indent=2, sort_keys=True) + "\n")


def _sha256(path: Path, step: Step) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(8 << 20):
            digest.update(chunk)
            step.advance(len(chunk))
    return digest.hexdigest()


@contextlib.contextmanager
def _tensor_progress(step: Step) -> Iterator[None]:
    """transformers dequantizes tensor by tensor inside a tqdm loop and offers no other hook: that loop's `tqdm`
    is swapped for one that advances our step (and prints nothing). If transformers moves it, only the bar stops."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    original = getattr(gguf_loading, "tqdm", None)
    if original is None:
        yield
        return

    def counting(iterable, *args, **kwargs):
        for item in iterable:
            yield item
            step.advance(1)

    gguf_loading.tqdm = counting
    try:
        yield
    finally:
        gguf_loading.tqdm = original
