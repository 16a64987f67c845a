"""The grouped CPU LoRA ops: vLLM's own results for adapter tokens, one adapter or several in a batch, and nothing
at all for a base-model token (slot -1), which vLLM's CPU ops read as the last adapter slot (vllm#48421)."""

from __future__ import annotations

import pytest
import torch

lora_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

from gateway.engine import cpu_lora_ops  # noqa: E402

TOKENS, RANK, HIDDEN, OUT, SLOTS = 37, 16, 64, 96, 4
SEED = torch.Generator().manual_seed(1)
INDICES = {
    "one adapter": torch.full((TOKENS,), 2, dtype=torch.long),
    "mixed": torch.randint(0, SLOTS, (TOKENS,), generator=SEED),
    "mixed, with the base model": torch.randint(-1, SLOTS, (TOKENS,), generator=SEED),
    "the base model alone": torch.full((TOKENS,), -1, dtype=torch.long),
}


@pytest.fixture(params=list(INDICES))
def indices(request) -> torch.Tensor:
    return INDICES[request.param]


def reference(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """vLLM's op on the adapter tokens, zeros on the base model's."""
    theirs = torch.zeros(inputs.shape[0], weights.shape[2])
    lora_ops.bgmv_shrink(inputs, weights, theirs, indices.clamp(min=0), 1.0)
    return theirs.masked_fill((indices == -1).unsqueeze(1), 0.0)


def test_shrink(indices):
    torch.manual_seed(0)
    inputs, weights = torch.randn(TOKENS, HIDDEN), torch.randn(SLOTS, 1, RANK, HIDDEN)
    ours = torch.full((TOKENS, RANK), 7.0)
    cpu_lora_ops.bgmv_shrink(inputs, weights, ours, indices, 0.5)
    assert torch.allclose(ours, 0.5 * reference(inputs, weights, indices), atol=1e-5)


@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_and_expand_slice(indices, add_inputs):
    torch.manual_seed(0)
    inputs, weights = torch.randn(TOKENS, RANK), torch.randn(SLOTS, 1, OUT, RANK)
    delta = reference(inputs, weights, indices)
    start = torch.randn(TOKENS, OUT + 8)
    expected = start.clone()
    expected[:, :OUT] = start[:, :OUT] + delta if add_inputs else delta
    ours = start.clone()
    cpu_lora_ops.bgmv_expand(inputs, weights, ours, indices, add_inputs)
    assert torch.allclose(ours, expected, atol=1e-5)
    expected = start.clone()
    expected[:, 4 : 4 + OUT] = start[:, 4 : 4 + OUT] + delta if add_inputs else delta
    ours = start.clone()
    cpu_lora_ops.bgmv_expand_slice(inputs, weights, ours, indices, 4, OUT, add_inputs)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_on_adapter_tokens_the_ops_are_vllms():
    torch.manual_seed(0)
    indices = INDICES["mixed"]
    inputs, weights = torch.randn(TOKENS, RANK), torch.randn(SLOTS, 1, OUT, RANK)
    start = torch.randn(TOKENS, OUT)
    theirs, ours = start.clone(), start.clone()
    lora_ops.bgmv_expand(inputs, weights, theirs, indices, True)
    cpu_lora_ops.bgmv_expand(inputs, weights, ours, indices, True)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_vllms_own_cpu_ops_give_a_base_model_token_the_last_slots_adapter():
    """Why the base model's tokens are handled here at all: if vLLM fixes this, the note in the module can go."""
    torch.manual_seed(0)
    inputs, weights = torch.randn(1, HIDDEN), torch.randn(SLOTS, 1, RANK, HIDDEN)
    theirs = torch.zeros(1, RANK)
    lora_ops.bgmv_shrink(inputs, weights, theirs, torch.tensor([-1]), 1.0)
    assert torch.allclose(theirs, inputs @ weights[-1, 0].T, atol=1e-5)


def test_the_plugin_replaces_the_ops_that_the_sgmv_ops_and_the_cpu_wrapper_call(monkeypatch):
    for op in cpu_lora_ops.REPLACEMENTS:
        monkeypatch.setattr(lora_ops, op, getattr(lora_ops, op))  # put back after the test
    cpu_lora_ops.register()
    assert lora_ops.bgmv_shrink is cpu_lora_ops.bgmv_shrink
    # sgmv_shrink reaches bgmv_shrink through its module: a prefill of three prompts, two adapters and the base model.
    torch.manual_seed(0)
    inputs, weights = torch.randn(9, HIDDEN), torch.randn(SLOTS, 1, RANK, HIDDEN)
    out = torch.ones(9, RANK)
    lora_ops.sgmv_shrink(inputs, weights, out, torch.tensor([0, 4, 6]), torch.tensor([4, 2, 3]),
                         torch.tensor([1, 3, -1]), 3, 4, 9, 1.0)  # fmt: skip
    assert torch.allclose(out[:4], inputs[:4] @ weights[1, 0].T, atol=1e-5)
    assert torch.allclose(out[4:6], inputs[4:6] @ weights[3, 0].T, atol=1e-5)
    assert torch.equal(out[6:], torch.zeros(3, RANK))
