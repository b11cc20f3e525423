"""Llama 3 / 3.2: config, presets, Llama 3 RoPE scaling and the GGUF transforms (`llama` in llama.cpp).

The decoder modules are `infir.model.decoder`'s (no biases); parameter names follow transformers'
`LlamaForCausalLM`, so a state dict moves between the two unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from infir.model.decoder import DecoderConfig, DecoderLM, default_inv_freq


def _llama3_scaling() -> dict[str, Any]:
    return {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}


@dataclass
class LlamaConfig(DecoderConfig):
    model_type = "llama"
    hf_architecture = "LlamaForCausalLM"
    rope_types = ("default", "llama3")
    hf_defaults = {**DecoderConfig.hf_defaults, "max_position_embeddings": 2048, "bos_token_id": 1,
                   "eos_token_id": 2}

    vocab_size: int = 128256
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 16
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 64
    max_position_embeddings: int = 131072
    rope_theta: float = 500000.0
    rope_scaling: dict[str, Any] | None = field(default_factory=_llama3_scaling)
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 128000
    eos_token_id: int | list[int] | None = 128001

    def to_hf_dict(self) -> dict[str, Any]:
        d = super().to_hf_dict()
        d.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
        return d

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        for key in ("attention_bias", "mlp_bias"):
            if d.get(key):
                raise ValueError(f"llama: {key}=true is not supported (infir's Llama has no biases)")
        return super().from_hf_dict(d)  # type: ignore[return-value]


PRESETS: dict[str, LlamaConfig] = {
    # The paper's model: 1,235,814,400 parameters.
    "llama3.2-1b": LlamaConfig(),
    # CPU presets: same architecture (GQA, tied embeddings, llama3 RoPE), toy sizes.
    "tiny": LlamaConfig(
        vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
    ),
    "micro": LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
    ),
}


def rope_inv_freq(cfg: DecoderConfig) -> torch.Tensor:
    """Inverse RoPE frequencies, with Llama 3's long-context scaling when configured."""
    inv_freq = default_inv_freq(cfg)
    scaling = cfg.rope_scaling or {}
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return inv_freq.float()
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, smoothed, scaled).float()


class Llama(DecoderLM):
    config: LlamaConfig

    @staticmethod
    def rope_inv_freq(cfg: DecoderConfig) -> torch.Tensor:
        return rope_inv_freq(cfg)


# --- GGUF (llama.cpp's `llama` architecture, as its convert_hf_to_gguf.py writes it) ---

def llama_cpp_permute(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder q/k rows from HF's rotate-half RoPE layout to llama.cpp's interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def llama3_rope_factors(cfg: DecoderConfig) -> torch.Tensor | None:
    """llama.cpp's `rope_freqs`: per-frequency divisors equal to infir's Llama 3 RoPE scaling (None without it)."""
    scaling = cfg.rope_scaling or {}
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return None
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    factors = []
    for freq in default_inv_freq(cfg).tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old_len / high:
            factors.append(1.0)
        elif wavelen > old_len / low:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32)


def gguf_tensor(hf_name: str, tensor: torch.Tensor, cfg: DecoderConfig) -> torch.Tensor:
    """q/k rows in llama.cpp's RoPE pair order; everything else as is."""
    if hf_name.endswith("q_proj.weight"):
        return llama_cpp_permute(tensor, cfg.num_attention_heads)
    if hf_name.endswith("k_proj.weight"):
        return llama_cpp_permute(tensor, cfg.num_key_value_heads)
    return tensor


def gguf_extra_tensors(cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    factors = llama3_rope_factors(cfg)
    return {} if factors is None else {"rope_freqs.weight": factors}


def gguf_hparams(cfg: DecoderConfig) -> dict[str, Any]:
    """Keys beyond the common ones (convert_hf_to_gguf's LlamaModel adds vocab size and RoPE dimensions)."""
    return {"vocab_size": cfg.vocab_size, "rope.dimension_count": cfg.head_dim,
            "attention.key_length": cfg.head_dim, "attention.value_length": cfg.head_dim}
