"""Export an infir model folder to the formats the ecosystem loads: Hugging Face and GGUF (llama.cpp).

HF: the folder layout is already transformers' (config.json, model.safetensors, tokenizer files);
export re-writes it cleanly (optionally in another dtype) and makes sure the chat template travels.

GGUF: written with the `gguf` package like llama.cpp's `convert_hf_to_gguf.py` does for Llama:
llama.cpp's RoPE pairs adjacent dimensions while HF pairs the two halves of each head, so
q_proj/k_proj rows are permuted; Llama 3 RoPE scaling becomes the `rope_freqs` tensor of
per-frequency divisors; the tokenizer is stored as a gpt2-style BPE vocabulary with merges,
token types, special token ids and the chat template.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from infir.model.hf_io import load_config, load_model, save_model
from infir.model.llama import LlamaConfig
from infir.utils.io import atomic_path
from infir.utils.log import get_logger

log = get_logger(__name__)

GGUF_QUANTS = ("f32", "f16", "q8_0")


def load_model_tokenizer(model_dir: str | Path):
    """The model and its tokenizer from an infir/HF folder (tokenizer None when the folder has none)."""
    from infir.model.tokenizer import load_tokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: not a model folder (no config.json)")
    model = load_model(model_dir)
    has_tokenizer = (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists()
    return model, (load_tokenizer(model_dir) if has_tokenizer else None)


def export_hf(model_dir: str | Path, out_dir: str | Path, dtype: str | None = None) -> Path:
    """Write a transformers-loadable folder: safetensors + config.json + tokenizer files with chat template."""
    from infir.model.chat_template import LLAMA3_CHAT_TEMPLATE

    model, tokenizer = load_model_tokenizer(model_dir)
    if tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    torch_dtype = getattr(torch, dtype) if dtype else None
    out = save_model(model, out_dir, tokenizer=tokenizer, dtype=torch_dtype)
    log.info("exported %s to Hugging Face folder %s", model_dir, out)
    return out


def llama_cpp_permute(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder q/k rows from HF's rotate-half RoPE layout to llama.cpp's interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def llama3_rope_factors(cfg: LlamaConfig) -> torch.Tensor | None:
    """llama.cpp's `rope_freqs`: per-frequency divisors equal to infir's Llama 3 RoPE scaling (None without it)."""
    scaling = cfg.rope_scaling or {}
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return None
    dim = cfg.head_dim
    freqs = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    factors = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old_len / high:
            factors.append(1.0)
        elif wavelen > old_len / low:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32)


def _tokenizer_pre(model_dir: Path) -> str:
    """llama.cpp's pre-tokenizer name: 'llama-bpe' when the split regex is Llama 3's."""
    from infir.model.tokenizer import LLAMA3_SPLIT_PATTERN

    text = (model_dir / "tokenizer.json").read_text(encoding="utf-8")
    if json.dumps(LLAMA3_SPLIT_PATTERN)[1:-1] in text:
        return "llama-bpe"
    log.warning("%s: pre-tokenizer is not Llama 3's; llama.cpp will use its default split", model_dir)
    return "default"


def _add_tokenizer(writer, model_dir: Path, tokenizer, vocab_size: int) -> None:
    import gguf

    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    special = {i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_tokenizer_pre(model_dir))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    if special_vocab.chat_template is None and getattr(tokenizer, "chat_template", None):
        special_vocab.chat_template = tokenizer.chat_template
    special_vocab.add_to_gguf(writer, quiet=True)
    eot = vocab.get("<|eot_id|>")
    if eot is not None:
        writer.add_eot_token_id(eot)


def _gguf_tensor(writer, name: str, tensor: torch.Tensor, quant: str) -> None:
    import gguf

    data = tensor.detach().float().numpy()
    if data.ndim == 1 or quant == "f32":
        writer.add_tensor(name, data.astype(np.float32))
    elif quant == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def export_gguf(model_dir: str | Path, out_file: str | Path, quant: str = "f16") -> Path:
    """Write a llama.cpp-loadable GGUF file (architecture 'llama') with tokenizer and chat template."""
    import gguf

    if quant not in GGUF_QUANTS:
        raise ValueError(f"unknown GGUF quantization {quant!r}; choose one of {', '.join(GGUF_QUANTS)}")
    model_dir, out_file = Path(model_dir), Path(out_file)
    model, tokenizer = load_model_tokenizer(model_dir)
    if tokenizer is None:
        raise ValueError(f"{model_dir}: GGUF export needs the tokenizer files next to the model")
    cfg = load_config(model_dir)
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    with atomic_path(out_file) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_name(model_dir.name)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_rope_freq_base(cfg.rope_theta)
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, model_dir, tokenizer, cfg.vocab_size)

        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
        rope_factors = llama3_rope_factors(cfg)
        if rope_factors is not None:
            writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", rope_factors.numpy())
        for hf_name, tensor in model.state_dict().items():
            if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
                continue  # llama.cpp reuses token_embd when output.weight is absent
            if hf_name.endswith("q_proj.weight"):
                tensor = llama_cpp_permute(tensor, cfg.num_attention_heads)
            elif hf_name.endswith("k_proj.weight"):
                tensor = llama_cpp_permute(tensor, cfg.num_key_value_heads)
            name = names.get_name(hf_name, try_suffixes=(".weight",))
            if name is None:
                raise ValueError(f"no GGUF name for tensor {hf_name}")
            _gguf_tensor(writer, name, tensor, quant)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    log.info("exported %s to GGUF %s (%s, %.1f MB)", model_dir, out_file, quant, out_file.stat().st_size / 1e6)
    return out_file


def run_export(model_dir: str | Path, out_dir: str | Path, config=None) -> dict[str, Path]:
    """The `export` stage: every format in `config.formats` under `out_dir` (hf/ and model-<quant>.gguf)."""
    from infir.serve.config import ExportConfig

    config = config or ExportConfig()
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    if "hf" in config.formats:
        written["hf"] = export_hf(model_dir, out_dir / "hf", dtype=config.hf_dtype)
    if "gguf" in config.formats:
        written["gguf"] = export_gguf(model_dir, out_dir / f"model-{config.gguf_quant}.gguf", quant=config.gguf_quant)
    return written
