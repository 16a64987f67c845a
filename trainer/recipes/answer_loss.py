"""`SFTTrainer` whose loss, on CPU, puts only the answer positions through the LM head, and runs a prompt prefix that
every example of the batch shares only once.

TRL's fused LM head scores only labelled positions on Triton devices (CUDA, XPU) and every position elsewhere,
adding entropy and top-1 metrics on top. Flywheel examples are long prompts (retrieved context included) with short
answers, so on CPU most of that LM-head work is thrown away: here it is skipped, and TRL's path is kept on GPUs.

The shared prefix: a tenant's requests mostly start alike (the chat template's system prompt, the app's
instructions), and on a small model that prefix is most of each example. The batch's longest common prefix is run
once, its keys and values repeated for every example, and the rest of each example attends to them, as in
generation with a cache: the same loss and gradients (a causal model's prefix never sees what follows it), for a
fraction of the work. The LoRA weights act on the prefix too, so the gradient flows through the shared pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer

# Below this many shared tokens, a second forward call costs more than it saves.
MIN_SHARED_PREFIX = 8


class AnswerLossSFTTrainer(SFTTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Evaluation asks for outputs but, with `prediction_loss_only`, uses the loss alone.
        wants_outputs = return_outputs and not self.args.prediction_loss_only
        if wants_outputs or self.args.device.type != "cpu":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        # The backbone carries PEFT's LoRA layers in place, so this runs the adapter too.
        backbone = causal_lm.get_decoder()
        labels, ids, mask = inputs["labels"], inputs["input_ids"], inputs.get("attention_mask")
        shared = shared_prefix_length(ids, labels, mask)
        if shared >= MIN_SHARED_PREFIX:
            hidden = _with_shared_prefix(backbone, ids, mask, shared)
        else:
            features = {k: v for k, v in inputs.items() if k != "labels"}
            hidden, shared = backbone(**features, use_cache=False).last_hidden_state, 0
        # Position t predicts token t + 1; every answer token lies after the shared prefix.
        hidden, targets = hidden[:, :-1], labels[:, shared + 1 :]
        answer = targets != -100
        logits = causal_lm.get_output_embeddings()(hidden[answer]).float()
        total = F.cross_entropy(logits, targets[answer], reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else answer.sum()
        loss = total / torch.as_tensor(count).clamp(min=1)
        return (loss, {}) if return_outputs else loss


def shared_prefix_length(ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None) -> int:
    """How many leading tokens every row shares, stopping before the first position whose next token is scored."""
    if ids.shape[0] < 2:
        return 0
    same = (ids == ids[:1]).all(dim=0)
    if mask is not None:
        same &= (mask == 1).all(dim=0)
    length = int(same.long().cumprod(dim=0).sum())
    scored = (labels != -100).any(dim=0).nonzero()
    first_scored = int(scored[0]) if len(scored) else ids.shape[1]
    # The hidden state at first_scored - 1 yields the first scored logit: it must be computed per row.
    return max(0, min(length, first_scored - 1, ids.shape[1] - 1))


def _with_shared_prefix(backbone, ids: torch.Tensor, mask: torch.Tensor | None, shared: int) -> torch.Tensor:
    """Hidden states of positions `shared..` for every row, the first `shared` tokens run once for the batch."""
    rows, width = ids.shape
    prefix = backbone(input_ids=ids[:1, :shared], use_cache=True)
    cache = prefix.past_key_values
    cache.batch_repeat_interleave(rows)
    positions = torch.arange(shared, width, device=ids.device)
    rest = backbone(
        input_ids=ids[:, shared:],
        attention_mask=mask if mask is not None else torch.ones_like(ids),
        past_key_values=cache,
        position_ids=positions.unsqueeze(0).expand(rows, -1),
        cache_position=positions,
        use_cache=True,
    )
    return rest.last_hidden_state
