"""Checks an adapter before it is accepted, and unpacks uploaded archives safely.

An adapter is accepted only when the engine will serve it: a PEFT LoRA in safetensors (never a pickle), trained for
the served base model (by name, and by tensor shapes when the base model's config is readable), rank within the
engine's `--max-lora-rank`, and only target modules the engine supports. Every refusal is an `AdapterRejected`
(422) that says what to change.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.errors import AdapterRejected

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_LORA_WEIGHT = re.compile(r"\.layers\.(\d+)\..*?\.?([a-z_]+)\.lora_([AB])(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class BaseModel:
    """What the adapter must fit: the served model's names, and its config.json when the gateway can read it."""

    names: tuple[str, ...]
    config: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, base_model_path: str, public_name: str) -> BaseModel:
        config_file = Path(base_model_path) / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else None
        return cls(names=(base_model_path, public_name), config=config)

    def matches(self, name: str) -> bool:
        wanted = {_last_part(n) for n in self.names} | set(self.names)
        return name in wanted or _last_part(name) in wanted


@dataclass(frozen=True)
class AdapterInfo:
    rank: int
    alpha: float
    target_modules: list[str]
    base_model: str
    sha256: str
    size_bytes: int
    files: list[str] = field(default_factory=list)


def check_adapter_dir(
    path: Path, *, base: BaseModel, max_rank: int, supported_modules: list[str], max_bytes: int
) -> AdapterInfo:
    files = _regular_files(path, max_bytes)
    if CONFIG not in files:
        raise AdapterRejected(f"`{CONFIG}` is missing: save the adapter with PEFT's `save_pretrained`.")
    if WEIGHTS not in files:
        hint = " (.bin pickles are refused: they can run code)" if "adapter_model.bin" in files else ""
        raise AdapterRejected(f"`{WEIGHTS}` is missing{hint}; save with `safe_serialization=True`.")
    try:
        config = json.loads((path / CONFIG).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterRejected(f"`{CONFIG}` is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise AdapterRejected(f"`{CONFIG}` must hold a JSON object.")

    if config.get("peft_type") != "LORA":
        raise AdapterRejected(f"peft_type is {config.get('peft_type')!r}; only LORA adapters can be served.")
    base_name = config.get("base_model_name_or_path") or ""
    if not base.matches(str(base_name)):
        raise AdapterRejected(
            f"The adapter was trained for `{base_name or 'an unnamed model'}`; this gateway serves `{base.names[-1]}`."
        )
    for unsupported in ("modules_to_save", "trainable_token_indices"):
        if config.get(unsupported):
            raise AdapterRejected(f"`{unsupported}` is set; the engine serves LoRA weights only.")
    if config.get("use_dora"):
        raise AdapterRejected("DoRA adapters are not supported by the engine.")

    rank = config.get("r")
    ranks = [rank, *dict(config.get("rank_pattern") or {}).values()]
    if not isinstance(rank, int) or not all(isinstance(r, int) and r > 0 for r in ranks):
        raise AdapterRejected("`r` must be a positive integer.")
    if max(ranks) > max_rank:
        raise AdapterRejected(f"Rank {max(ranks)} is above the engine's maximum of {max_rank}.")

    targets = config.get("target_modules")
    if isinstance(targets, str) or not isinstance(targets, list) or not targets:
        raise AdapterRejected("`target_modules` must be a list of module names (regular expressions are not accepted).")
    unsupported_targets = sorted({_last_part(t, ".") for t in targets} - set(supported_modules))
    if unsupported_targets:
        raise AdapterRejected(
            f"Target modules {unsupported_targets} are not supported by the engine; use {sorted(supported_modules)}."
        )

    tensors = _safetensors_header(path / WEIGHTS)
    _check_shapes(tensors, base.config, max(ranks))
    return AdapterInfo(
        rank=int(rank),
        alpha=float(config.get("lora_alpha") or rank),
        target_modules=sorted({_last_part(t, ".") for t in targets}),
        base_model=str(base_name),
        sha256=_digest(path, files),
        size_bytes=sum((path / name).stat().st_size for name in files),
        files=sorted(files),
    )


def extract_archive(archive: IO[bytes], dest: Path, max_bytes: int) -> Path:
    """Unpack a `.tar.gz` into `dest`; refuse links, devices and paths leaving it. Returns the adapter's directory."""
    try:
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise AdapterRejected(f"The archive entry `{member.name}` points outside the archive.")
                if not (member.isfile() or member.isdir()):
                    raise AdapterRejected(
                        f"The archive entry `{member.name}` is a link or device; only files are allowed."
                    )
                total += member.size
                if total > max_bytes:
                    raise AdapterRejected(f"The archive unpacks to more than {max_bytes} bytes.")
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise AdapterRejected(f"The upload is not a readable .tar.gz archive: {exc}") from None
    if (dest / CONFIG).is_file():
        return dest
    candidates = [config.parent for config in dest.glob(f"*/{CONFIG}")]
    if len(candidates) != 1:
        raise AdapterRejected(f"The archive must hold one adapter directory with `{CONFIG}` at its top.")
    return candidates[0]


def _regular_files(path: Path, max_bytes: int) -> list[str]:
    if not path.is_dir():
        raise AdapterRejected(f"No adapter directory at `{path}`.")
    names, total = [], 0
    for item in sorted(path.rglob("*")):
        if item.is_symlink():
            raise AdapterRejected(f"`{item.relative_to(path)}` is a symbolic link; copy the file instead.")
        if item.is_file():
            total += item.stat().st_size
            if total > max_bytes:
                raise AdapterRejected(f"The adapter is larger than {max_bytes} bytes.")
            names.append(str(item.relative_to(path)))
    return names


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file, read without torch; a truncated or corrupt file is refused."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise AdapterRejected(f"`{WEIGHTS}` is truncated.")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, 100 * 1024 * 1024):
            raise AdapterRejected(f"`{WEIGHTS}` is not a safetensors file.")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise AdapterRejected(f"`{WEIGHTS}` has a corrupt header.") from None
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    if not header or any(tensor["data_offsets"][1] > data_size for tensor in header.values()):
        raise AdapterRejected(f"`{WEIGHTS}` is truncated or holds no tensors.")
    return header


def _check_shapes(tensors: dict[str, Any], config: dict[str, Any] | None, max_rank: int) -> None:
    """Every LoRA matrix must fit the base model's layer sizes; this is what makes 'trained for this model' true."""
    expected = _projection_sizes(config) if config else {}
    layers = config.get("num_hidden_layers") if config else None
    lora_tensors = 0
    for name, tensor in tensors.items():
        match = _LORA_WEIGHT.search(name)
        if not match:
            continue
        lora_tensors += 1
        layer, module, which = int(match.group(1)), match.group(2), match.group(3)
        shape = tensor["shape"]
        if len(shape) != 2:
            raise AdapterRejected(f"`{name}` has shape {shape}; LoRA matrices are 2-D.")
        rank = shape[0] if which == "A" else shape[1]
        if rank > max_rank:
            raise AdapterRejected(f"`{name}` has rank {rank}, above the engine's maximum of {max_rank}.")
        if layers is not None and layer >= layers:
            raise AdapterRejected(f"`{name}` is for layer {layer}; the base model has {layers} layers.")
        if module in expected:
            in_features, out_features = expected[module]
            actual = shape[1] if which == "A" else shape[0]
            wanted = in_features if which == "A" else out_features
            if actual != wanted:
                raise AdapterRejected(
                    f"`{name}` has size {actual} where the base model's {module} needs {wanted}: "
                    "the adapter was trained for another model."
                )
    if lora_tensors == 0:
        raise AdapterRejected(f"`{WEIGHTS}` holds no LoRA weights.")


def _projection_sizes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each Llama-family projection, from config.json."""
    hidden = config.get("hidden_size")
    heads = config.get("num_attention_heads")
    if not hidden or not heads:
        return {}
    head_dim = config.get("head_dim") or hidden // heads
    kv = (config.get("num_key_value_heads") or heads) * head_dim
    inner = config.get("intermediate_size") or 0
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inner),
        "up_proj": (hidden, inner),
        "down_proj": (inner, hidden),
    }


def _digest(path: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        with (path / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _last_part(name: str, sep: str = "/") -> str:
    return name.rstrip(sep).rsplit(sep, 1)[-1]
