"""GGUF files made in the tests with the `gguf` package, as llama.cpp's converter writes them.

`write_llama` turns a Hugging Face Llama directory (the tiny model) into a GGUF: its byte-level BPE tokenizer
(`gpt2` in llama.cpp's terms) with the chat template, the config as llama.* keys, the attention's q/k weights
permuted to llama.cpp's rotary layout (transformers undoes it on loading), the 2-D weights quantized to Q8_0 (the
rest F32) unless told otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp's LlamaModel.permute: the two rotary halves of each head interleaved.
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_llama(model_dir: Path, out: Path, *, quantization: str = "Q8_0", name: str = "tiny llama") -> Path:
    import gguf
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    state = load_file(str(model_dir / "model.safetensors"))
    heads, kv_heads, layers = config["num_attention_heads"], config["num_key_value_heads"], config["num_hidden_layers"]
    vocab_size = config["vocab_size"]

    writer = gguf.GGUFWriter(str(out), arch="llama")
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_rope_freq_base(float(config.get("rope_theta") or config.get("rope_parameters", {}).get("rope_theta")))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(vocab_size)

    # The vocabulary, padded to the embedding's rows as llama.cpp pads it.
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    tokens = [token for token, _ in vocab] + [f"[PAD{i}]" for i in range(len(vocab), vocab_size)]
    special = set(tokenizer.all_special_ids)
    types = [3 if i in special else (5 if i >= len(vocab) else 1) for i in range(vocab_size)]  # control, unused, normal
    merges = [" ".join(pair) for pair in json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    qtype = gguf.GGMLQuantizationType[quantization]
    for hf_name, tensor in state.items():
        data = tensor.to(torch.float32).numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if data.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def write_header_only(out: Path, *, architecture: str = "llama", tensor_type: str = "F32") -> Path:
    """A GGUF with one tensor of `tensor_type`: enough for the checks that read the header."""
    import gguf

    writer = gguf.GGUFWriter(str(out), arch=architecture)
    writer.add_name("not a real model")
    qtype = gguf.GGMLQuantizationType[tensor_type]
    if qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor("token_embd.weight", np.zeros((4, 256), dtype=np.float32))
    else:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        writer.add_tensor("token_embd.weight", np.zeros((4, 256 // block * size), dtype=np.uint8), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
