"""Build the `tiny-random` base model: a tiny Llama with a locally trained BPE tokenizer and a chat template.

Made in seconds with no download, for fast tests and machines that want none. It is untrained (random weights):
whatever a LoRA adapter makes it do is visibly the adapter's doing. It is saved in Hugging Face format, so vLLM,
transformers and PEFT all load it like any other model.

    python -m trainer.tiny_model var/models/tiny-random
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from trainer import demo_tasks

SPECIAL_TOKENS = ["<|pad|>", "<|begin|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

# One turn per message, closed by <|end|>, which is also the end-of-sequence token, so a model that has
# learned the format stops by itself.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MARKER = "loraflow-tiny-model.json"


@dataclass(frozen=True)
class TinyModelSpec:
    """Everything that decides the tiny model's bytes: the same spec gives the same files."""

    seed: int = 0
    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4  # head_dim 64: one of the sizes vLLM's CPU attention supports
    max_positions: int = 4096
    format_version: int = 1


def is_built(path: Path, spec: TinyModelSpec = TinyModelSpec()) -> bool:
    marker = path / MARKER
    return marker.is_file() and json.loads(marker.read_text()) == asdict(spec)


def build(path: Path, spec: TinyModelSpec = TinyModelSpec(), log: Callable[[str], None] = print) -> Path:
    """Build the model into `path` unless the same spec is already there. Returns `path`."""
    path = Path(path)
    if is_built(path, spec):
        log(f"tiny model already built at {path}")
        return path
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tiny-model-") as tmp:
        staging = Path(tmp) / "model"
        log("training the BPE tokenizer")
        tokenizer = _train_tokenizer(spec)
        tokenizer.save_pretrained(staging)

        log("initialising a tiny Llama")
        torch.manual_seed(spec.seed)
        config = LlamaConfig(
            vocab_size=_round_up(len(tokenizer), 64),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads,
            head_dim=spec.hidden_size // spec.num_heads,
            max_position_embeddings=spec.max_positions,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
            dtype="float32",
        )
        model = LlamaForCausalLM(config)
        # Unit-variance logits: with the default 0.02 the output layer caps how sure any answer can get, and a
        # LoRA on the attention and MLP layers could never make the model confident of a label.
        torch.nn.init.normal_(model.lm_head.weight, std=spec.hidden_size**-0.5)
        log("saving in Hugging Face format")
        model.save_pretrained(staging, safe_serialization=True)
        (staging / MARKER).write_text(json.dumps(asdict(spec)))
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    log(f"tiny model ready at {path}")
    return path


def _train_tokenizer(spec: TinyModelSpec):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(demo_tasks.corpus_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|begin|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=spec.max_positions,
    )


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "var/models/tiny-random"))
