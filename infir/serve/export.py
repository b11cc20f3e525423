"""Export an infir model folder to the formats the ecosystem loads: Hugging Face and GGUF (llama.cpp).

HF: the folder layout is already transformers' (config.json, model.safetensors, tokenizer files);
export re-writes it cleanly (optionally in another dtype) and makes sure the chat template travels.

GGUF: written with the `gguf` package as llama.cpp's `convert_hf_to_gguf.py` does for the model's architecture
(the registry's `gguf_arch`: `llama` or `qwen2`): the common hyperparameters under `{arch}.`, the architecture's
own keys and tensor transforms (Llama: q/k rows permuted to llama.cpp's interleaved RoPE pairs, Llama 3 RoPE
scaling as the `rope_freqs` tensor; Qwen2: q/k/v biases, tensors as in HF), tensor names from gguf's own map,
and the tokenizer as a gpt2-style BPE vocabulary with merges, token types, special token ids and the chat
template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infir.model import registry
from infir.model.hf_io import load_model, save_model
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
    """Write a transformers-loadable folder: safetensors + config.json + tokenizer files with chat template
    (the architecture's default template when the tokenizer has none)."""
    model, tokenizer = load_model_tokenizer(model_dir)
    if tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = (registry.default_chat_template(tokenizer)
                                   or registry.architecture_of(model).chat_template)
    torch_dtype = getattr(torch, dtype) if dtype else None
    out = save_model(model, out_dir, tokenizer=tokenizer, dtype=torch_dtype)
    log.info("exported %s to Hugging Face folder %s", model_dir, out)
    return out


def _tokenizer_pre(model_dir: Path) -> str:
    """llama.cpp's pre-tokenizer name for the split regex in tokenizer.json: 'llama-bpe' (Llama 3's),
    'qwen2' (Qwen2's), else 'default' (with a warning)."""
    from infir.model.tokenizer import LLAMA3_SPLIT_PATTERN, QWEN2_SPLIT_PATTERN

    text = (model_dir / "tokenizer.json").read_text(encoding="utf-8")
    for pattern, name in ((LLAMA3_SPLIT_PATTERN, "llama-bpe"), (QWEN2_SPLIT_PATTERN, "qwen2")):
        if json.dumps(pattern)[1:-1] in text:
            return name
    log.warning("%s: pre-tokenizer is neither Llama 3's nor Qwen2's; llama.cpp will use its default split", model_dir)
    return "default"


def _looks_special(token: str) -> bool:
    return token.startswith("<|") and token.endswith("|>")


def _add_tokenizer(writer, model_dir: Path, tokenizer, vocab_size: int, arch: registry.Architecture) -> None:
    """Token types as convert_hf_to_gguf's get_vocab_base: added tokens that are special (or look like <|...|>)
    are CONTROL, other added tokens USER_DEFINED, the rest NORMAL; ids without a token are UNUSED padding."""
    import gguf

    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in added:
            control = added[i].special or _looks_special(by_id[i])
            types.append(gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_tokenizer_pre(model_dir))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    if special_vocab.chat_template is None and getattr(tokenizer, "chat_template", None):
        special_vocab.chat_template = tokenizer.chat_template
    if "bos" not in special_vocab.add_special_token:  # say it rather than leave it to the runtime's default
        bos = getattr(tokenizer, "bos_token_id", None)
        special_vocab.add_special_token["bos"] = bos is not None and tokenizer.encode("a")[:1] == [bos]
    special_vocab.add_to_gguf(writer, quiet=True)
    # End of turn (<|eot_id|>, <|im_end|>) of the tokenizer's family: llama.cpp would guess it from the token
    # text; writing it makes chat completions stop there in any runtime.
    eot = registry.special_ids(tokenizer, arch)["end_of_turn"]
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


def _gguf_hparam(writer, key: str, value: Any) -> None:
    full = f"{writer.arch}.{key}"
    if isinstance(value, bool):
        writer.add_bool(full, value)
    elif isinstance(value, int):
        writer.add_uint32(full, value)
    elif isinstance(value, float):
        writer.add_float32(full, value)
    else:
        writer.add_string(full, str(value))


def export_gguf(model_dir: str | Path, out_file: str | Path, quant: str = "f16") -> Path:
    """Write a llama.cpp-loadable GGUF file (the architecture's llama.cpp name) with tokenizer and chat template."""
    import gguf

    if quant not in GGUF_QUANTS:
        raise ValueError(f"unknown GGUF quantization {quant!r}; choose one of {', '.join(GGUF_QUANTS)}")
    model_dir, out_file = Path(model_dir), Path(out_file)
    model, tokenizer = load_model_tokenizer(model_dir)
    if tokenizer is None:
        raise ValueError(f"{model_dir}: GGUF export needs the tokenizer files next to the model")
    cfg = model.config
    arch = registry.architecture_of(cfg)
    gguf_arch = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch.gguf_arch]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    with atomic_path(out_file) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch.gguf_arch)
        writer.add_name(model_dir.name)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_rope_freq_base(cfg.rope_theta)
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        for key, value in arch.gguf_hparams(cfg).items():
            _gguf_hparam(writer, key, value)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, model_dir, tokenizer, cfg.vocab_size, arch)

        names = gguf.get_tensor_name_map(gguf_arch, cfg.num_hidden_layers)
        for name, tensor in arch.gguf_extra_tensors(cfg).items():
            writer.add_tensor(name, tensor.float().numpy())
        for hf_name, tensor in model.state_dict().items():
            if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
                continue  # llama.cpp reuses token_embd when output.weight is absent
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ValueError(f"no GGUF name for tensor {hf_name} in llama.cpp's {arch.gguf_arch} map")
            _gguf_tensor(writer, name, arch.gguf_tensor(hf_name, tensor, cfg), quant)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    log.info("exported %s to GGUF %s (%s %s, %.1f MB)", model_dir, out_file, arch.gguf_arch, quant,
             out_file.stat().st_size / 1e6)
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
