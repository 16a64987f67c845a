"""The grouped CPU LoRA ops give vLLM's own results: every op, one adapter or several in a batch, slot -1 included."""

from __future__ import annotations

import pytest
import torch

lora_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

from gateway.engine import cpu_lora_ops  # noqa: E402

TOKENS, RANK, HIDDEN, OUT, SLOTS = 37, 16, 64, 96, 4


@pytest.fixture(params=["one adapter", "mixed, with -1"])
def indices(request) -> torch.Tensor:
    if request.param == "one adapter":
        return torch.full((TOKENS,), 2, dtype=torch.long)
    return torch.randint(-1, SLOTS, (TOKENS,), generator=torch.Generator().manual_seed(1))


def test_shrink_is_vllms(indices):
    torch.manual_seed(0)
    inputs, weights = torch.randn(TOKENS, HIDDEN), torch.randn(SLOTS, 1, RANK, HIDDEN)
    theirs, ours = torch.zeros(TOKENS, RANK), torch.zeros(TOKENS, RANK)
    lora_ops.bgmv_shrink(inputs, weights, theirs, indices, 0.5)
    cpu_lora_ops.bgmv_shrink(inputs, weights, ours, indices, 0.5)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_and_expand_slice_are_vllms(indices, add_inputs):
    torch.manual_seed(0)
    inputs, weights = torch.randn(TOKENS, RANK), torch.randn(SLOTS, 1, OUT, RANK)
    start = torch.randn(TOKENS, OUT + 8)
    theirs, ours = start.clone(), start.clone()
    lora_ops.bgmv_expand(inputs, weights, theirs, indices, add_inputs)
    cpu_lora_ops.bgmv_expand(inputs, weights, ours, indices, add_inputs)
    assert torch.allclose(ours, theirs, atol=1e-5)
    theirs, ours = start.clone(), start.clone()
    lora_ops.bgmv_expand_slice(inputs, weights, theirs, indices, 4, OUT, add_inputs)
    cpu_lora_ops.bgmv_expand_slice(inputs, weights, ours, indices, 4, OUT, add_inputs)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_the_plugin_replaces_the_ops_that_the_sgmv_ops_and_the_cpu_wrapper_call(monkeypatch):
    for op in cpu_lora_ops.REPLACEMENTS:
        monkeypatch.setattr(lora_ops, op, getattr(lora_ops, op))  # put back after the test
    cpu_lora_ops.register()
    assert lora_ops.bgmv_shrink is cpu_lora_ops.bgmv_shrink
    # sgmv_shrink reaches bgmv_shrink through its module: a prefill of two prompts on two adapters.
    torch.manual_seed(0)
    inputs, weights = torch.randn(6, HIDDEN), torch.randn(SLOTS, 1, RANK, HIDDEN)
    out = torch.zeros(6, RANK)
    lora_ops.sgmv_shrink(inputs, weights, out, torch.tensor([0, 4]), torch.tensor([4, 2]), torch.tensor([1, 3]),
                         2, 4, 6, 1.0)  # fmt: skip
    assert torch.allclose(out[:4], inputs[:4] @ weights[1, 0].T, atol=1e-5)
    assert torch.allclose(out[4:], inputs[4:] @ weights[3, 0].T, atol=1e-5)
