"""A vLLM plugin for its CPU build: adapter requests batched together without a copy of the LoRA weights per token.

vLLM's CPU LoRA ops (`vllm/lora/ops/torch_ops/lora_ops.py`) gather each token's adapter matrices before multiplying
(`weights[indices]`, then an einsum), so a batch of prompts moves gigabytes per forward pass: on SmolLM2-135M
(2 cores), 16 concurrent adapter requests took 1.3 s each against 0.28 s for the base model, and one of the
gathering products took 72 ms where a plain matmul takes 4 ms. Here the tokens are grouped by adapter and each
group is one matmul; the results are the same for every adapter token.

A base-model token (index -1) gets no LoRA at all, as in vLLM's GPU kernels. vLLM's CPU ops read -1 as the last
adapter slot (`weights[-1]`; vllm-project/vllm#48421, open): once every `--max-loras` slot held an adapter, requests
for the base model answered partly as whichever adapter sat in the last slot, another tenant's included.

vLLM loads it in each of its processes through the `vllm.general_plugins` entry point; the gateway never imports it.
It changes nothing on other platforms, and imports no torch of its own (it works on the tensors vLLM passes in).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("vllm.loraflow")  # under vLLM's logger, so it shows in the engine's log


NO_ADAPTER = -1  # vLLM's slot index for a token of a base-model request


def grouped_products(inputs: Any, weights: Any, indices: Any, dtype: Any) -> Any:
    """`inputs[t] @ weights[indices[t]].T` for every token t, with one matmul per adapter present in the batch, and
    zeros for the base model's tokens."""
    if weights.dim() == 4:  # [adapters, 1, out, in]
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype)
    present = indices.unique().tolist()
    if len(present) == 1 and present[0] != NO_ADAPTER:  # the usual case: every token of the batch on one adapter
        return inputs @ weights[present[0]].to(dtype).T
    out = inputs.new_zeros(inputs.shape[0], weights.shape[1])
    for index in present:
        if index != NO_ADAPTER:
            rows = (indices == index).nonzero().squeeze(1)
            out[rows] = inputs[rows] @ weights[index].to(dtype).T
    return out


def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0) -> None:
    outputs = grouped_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True) -> None:
    outputs = grouped_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    # LoRA adapter and model may add different amounts of padding to output
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common_len] += outputs[:limit, :common_len]
    else:
        output_tensor[:, :common_len] = outputs[:limit, :common_len]


def bgmv_expand_slice(
    inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset: int, slice_size: int, add_inputs=True
) -> None:
    outputs = grouped_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs[:]
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs[:]


REPLACEMENTS = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand, "bgmv_expand_slice": bgmv_expand_slice}


def register() -> None:
    """The entry point vLLM calls: on the CPU platform, put the grouped ops where vLLM's CPU LoRA path finds them."""
    import importlib
    import sys

    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    # The sgmv_* ops call these through their module's globals; the CPU wrapper imports them by name.
    targets = ["vllm.lora.ops.torch_ops.lora_ops", "vllm.lora.ops.torch_ops"]
    if "vllm.lora.punica_wrapper.punica_cpu" in sys.modules:
        targets.append("vllm.lora.punica_wrapper.punica_cpu")
    for name in targets:
        module = importlib.import_module(name)
        for op, replacement in REPLACEMENTS.items():
            if hasattr(module, op):
                setattr(module, op, replacement)
    log.info("loraflow: CPU LoRA ops grouped by adapter (no per-token weight copies)")
