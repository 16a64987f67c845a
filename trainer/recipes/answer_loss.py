"""`SFTTrainer` whose loss, on CPU, puts only the answer positions through the LM head.

TRL's fused LM head scores only labelled positions on Triton devices (CUDA, XPU) and every position elsewhere,
adding entropy and top-1 metrics on top. Flywheel examples are long prompts (retrieved context included) with short
answers, so on CPU most of that LM-head work is thrown away: here it is skipped, and TRL's path is kept on GPUs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer


class AnswerLossSFTTrainer(SFTTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or self.args.device.type != "cpu":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        # The backbone carries PEFT's LoRA layers in place, so this runs the adapter too.
        backbone = causal_lm.get_decoder()
        features = {k: v for k, v in inputs.items() if k not in ("labels",)}
        hidden = backbone(**features, use_cache=False).last_hidden_state[:, :-1]
        targets = inputs["labels"][:, 1:]
        answer = targets != -100
        logits = causal_lm.get_output_embeddings()(hidden[answer]).float()
        total = F.cross_entropy(logits, targets[answer], reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else answer.sum()
        return total / torch.as_tensor(count).clamp(min=1)
