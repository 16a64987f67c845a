"""Pick the device and number format a run trains in: bf16 on a GPU that has it, float32 elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class Placement:
    device: Literal["cpu", "cuda"]
    dtype: torch.dtype

    @property
    def bf16(self) -> bool:
        return self.dtype == torch.bfloat16

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def resolve(device: Literal["auto", "cpu", "cuda"]) -> Placement:
    """The placement for a configured device; `cuda` without a GPU is an error, not a silent fallback."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for, but no CUDA GPU is visible")
        # The base weights are stored in bf16 and the LoRA weights stay float32 (PEFT upcasts them), with bf16
        # autocast for the matmuls. Older GPUs without bf16 train in float32 rather than risk fp16 overflow.
        return Placement("cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    # CPU matmuls in bf16 are slower than float32 on most CPUs (not all: see the README on training throughput).
    return Placement("cpu", torch.float32)
