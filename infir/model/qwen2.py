"""Qwen2 / Qwen2.5: config, presets and GGUF hooks (`qwen2` in llama.cpp).

The decoder is `infir.model.decoder`'s with biases on the q/k/v projections (o_proj and the MLP have none), as
transformers' `Qwen2Attention`. Facts checked against transformers' Qwen2 implementation and the released
Qwen2.5 configs:

- RMSNorm eps 1e-6 (Qwen2.5-14B and larger: 1e-5, read from config.json); RoPE theta 1,000,000 in every Qwen2.5
  config (transformers assumes 10,000 when a config.json omits it, and so does `from_hf_dict`); plain RoPE;
- the output head is tied to the embeddings in Qwen2.5-0.5B/1.5B/3B and untied from 7B up: always read from
  `tie_word_embeddings` (transformers' default when absent: untied);
- head_dim = hidden_size / num_attention_heads (configs carry no head_dim);
- sliding-window attention exists in the config (`use_sliding_window`) but no Qwen2.5 release turns it on;
  a config that would use it is refused rather than run with full attention;
- end of sequence: `<|endoftext|>` (151643, ends documents; base models' eos) and `<|im_end|>` (151645, ends a
  ChatML turn; Instruct models' eos); no BOS token is prepended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from infir.model.decoder import DecoderConfig, DecoderLM


@dataclass
class Qwen2Config(DecoderConfig):
    model_type = "qwen2"
    hf_architecture = "Qwen2ForCausalLM"
    qkv_bias = True
    rope_types = ("default",)
    hf_defaults = {**DecoderConfig.hf_defaults, "bos_token_id": None, "eos_token_id": None}

    vocab_size: int = 151936
    hidden_size: int = 896
    intermediate_size: int = 4864
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    head_dim: int = 64
    max_position_embeddings: int = 32768
    rope_theta: float = 1000000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    bos_token_id: int | None = 151643
    eos_token_id: int | list[int] | None = 151643

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_dim * self.num_attention_heads != self.hidden_size:
            # transformers' Qwen2 reads head_dim from the config when present, so this would still load there;
            # llama.cpp's qwen2 derives it from the embedding size: keep the two equal.
            raise ValueError(f"qwen2: head_dim {self.head_dim} x {self.num_attention_heads} heads != hidden_size "
                             f"{self.hidden_size}")

    def to_hf_dict(self) -> dict[str, Any]:
        d = super().to_hf_dict()
        d.pop("head_dim")  # Qwen2 configs derive it (hidden_size / num_attention_heads)
        d.update(use_sliding_window=False, sliding_window=None, max_window_layers=self.num_hidden_layers)
        return d

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> Qwen2Config:
        layers = d.get("num_hidden_layers", 32)
        sliding = [i for i, kind in enumerate(d.get("layer_types") or []) if kind == "sliding_attention"]
        if d.get("use_sliding_window") and d.get("sliding_window") is not None:
            sliding = sliding or list(range(d.get("max_window_layers", 28), layers))
        if sliding:
            raise ValueError(f"qwen2: sliding-window attention (use_sliding_window, layers {sliding[:4]}...) is not "
                             "implemented; no Qwen2.5 release uses it")
        return super().from_hf_dict(d)  # type: ignore[return-value]


PRESETS: dict[str, Qwen2Config] = {
    # Qwen2.5 base models (their config.json values); 494,032,768 / 1,543,714,304 / 7,615,616,512 parameters.
    "qwen2.5-0.5b": Qwen2Config(),
    "qwen2.5-1.5b": Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                num_attention_heads=12, num_key_value_heads=2, head_dim=128),
    "qwen2.5-7b": Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                              num_attention_heads=28, num_key_value_heads=4, head_dim=128,
                              max_position_embeddings=131072, tie_word_embeddings=False),
    # CPU presets: the Qwen2.5 layout (q/k/v biases, GQA, plain RoPE) at toy sizes.
    "qwen2-tiny": Qwen2Config(vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048),
    "qwen2-micro": Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                               max_position_embeddings=1024),
}


class Qwen2(DecoderLM):
    config: Qwen2Config


# --- GGUF (llama.cpp's `qwen2` architecture, as its convert_hf_to_gguf.py writes it) ---

def gguf_tensor(hf_name: str, tensor: torch.Tensor, cfg: DecoderConfig) -> torch.Tensor:
    """Qwen2's q/k are stored as in HF: llama.cpp's qwen2 graph uses NEOX-style (rotate-half) RoPE."""
    return tensor


def gguf_extra_tensors(cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    return {}


def gguf_hparams(cfg: DecoderConfig) -> dict[str, Any]:
    """Nothing beyond the common keys (the converter writes key/value lengths only for configs with head_dim)."""
    return {}
