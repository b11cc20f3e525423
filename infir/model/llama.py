"""The Llama 3.2 decoder in one readable file.

Parameter names follow transformers' `LlamaForCausalLM`, so a state dict moves between the two
unchanged. This file knows nothing of parallelism, compilation or checkpoint formats.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from infir.model.attention import attend, dense_mask, document_block_mask, flex_available


@dataclass
class LlamaConfig:
    vocab_size: int = 128256
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 16
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 64
    max_position_embeddings: int = 131072
    rope_theta: float = 500000.0
    rope_scaling: dict[str, Any] | None = field(
        default_factory=lambda: {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    )
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    bos_token_id: int = 128000
    eos_token_id: int | list[int] = 128001
    pad_token_id: int | None = None
    initializer_range: float = 0.02

    def num_parameters(self) -> int:
        d, f, v, kv = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_key_value_heads
        attn = d * self.num_attention_heads * self.head_dim * 2 + d * kv * self.head_dim * 2
        layer = attn + 3 * d * f + 2 * d
        return v * d * (1 if self.tie_word_embeddings else 2) + self.num_hidden_layers * layer + d

    def to_hf_dict(self) -> dict[str, Any]:
        """A `config.json` that transformers reads as a LlamaConfig."""
        d = asdict(self)
        d.update(
            architectures=["LlamaForCausalLM"],
            model_type="llama",
            hidden_act="silu",
            attention_bias=False,
            attention_dropout=0.0,
            mlp_bias=False,
            pretraining_tp=1,
            use_cache=True,
            torch_dtype="float32",
        )
        return d

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in d.items() if k in known}
        if "head_dim" not in d or d.get("head_dim") is None:
            kwargs["head_dim"] = d["hidden_size"] // d["num_attention_heads"]
        if "rope_scaling" not in d:
            kwargs["rope_scaling"] = None
        if "num_key_value_heads" not in d or d.get("num_key_value_heads") is None:
            kwargs["num_key_value_heads"] = d["num_attention_heads"]
        if kwargs.get("rope_scaling") and "rope_type" not in kwargs["rope_scaling"]:
            kwargs["rope_scaling"] = {**kwargs["rope_scaling"], "rope_type": kwargs["rope_scaling"].get("type")}
        if "rope_theta" not in d and isinstance(d.get("rope_parameters"), dict):
            kwargs["rope_theta"] = d["rope_parameters"].get("rope_theta", cls.rope_theta)
        return cls(**kwargs)


def _preset(**kw: Any) -> LlamaConfig:
    return LlamaConfig(**kw)


PRESETS: dict[str, LlamaConfig] = {
    # The paper's model: 1,235,814,400 parameters.
    "llama3.2-1b": _preset(),
    # CPU presets: same architecture (GQA, tied embeddings, llama3 RoPE), toy sizes.
    "tiny": _preset(
        vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
    ),
    "micro": _preset(
        vocab_size=512, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
    ),
}


def rope_inv_freq(cfg: LlamaConfig) -> torch.Tensor:
    """Inverse RoPE frequencies, with Llama 3's long-context scaling when configured."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
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


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE (the HF layout). x: [B, H, T, D]; cos/sin: [B, T, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class KVCache:
    """A preallocated key/value cache for batched generation.

    `valid[b, j]` says whether cache slot j of row b holds a real token (left padding leaves holes).
    """

    def __init__(self, cfg: LlamaConfig, batch_size: int, max_len: int, device: Any = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        shape = (batch_size, cfg.num_key_value_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.shape[2]
        self.k[layer][:, :, self.length : self.length + t] = k
        self.v[layer][:, :, self.length : self.length + t] = v
        end = self.length + t
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def attention_mask_for(
    q_len: int,
    document_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    kv_cache: KVCache | None,
    device: Any,
) -> torch.Tensor | None:
    """Dense boolean mask [B, 1, q, k] (True = attend), or None for plain causal attention."""
    valid = kv_cache.valid if kv_cache is not None else None
    start = kv_cache.length if kv_cache is not None else 0
    return dense_mask(q_len, document_ids, attention_mask, valid, start, device)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Any,
                kv_cache: KVCache | None) -> torch.Tensor:
        b, t, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(b, t, cfg.num_attention_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
        out = attend(q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Any,
                kv_cache: KVCache | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    """Embeddings, decoder layers and final norm (HF's `model.` prefix)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Llama(nn.Module):
    # How document masks are computed: "auto" = flex attention BlockMask on CUDA for packed training
    # batches (no cache, no padding mask), dense SDPA masks otherwise; "flex" or "sdpa" force one.
    attn_impl: str = "auto"

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = LlamaBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    def rope(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        return_hidden: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, V] (or final hidden states with `return_hidden`).

        document_ids: packed sequences; attention never crosses a document boundary.
        attention_mask: [B, T_total] 1 for real tokens (left padding), used with or without a cache.
        inputs_embeds: precomputed input embeddings (the VLM splices image features in).
        """
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        b, t = x.shape[:2]
        start = kv_cache.length if kv_cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(start, start + t, device=x.device).expand(b, t)
        if kv_cache is not None:
            if attention_mask is not None:
                kv_cache.valid[:, start : start + t] = attention_mask[:, -t:].bool()
            else:
                kv_cache.valid[:, start : start + t] = True
        mask = self.attention_mask(t, document_ids, attention_mask, kv_cache, x.device)
        cos, sin = self.rope(position_ids, x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, kv_cache)
        if kv_cache is not None:
            kv_cache.length += t
        x = self.model.norm(x)
        return x if return_hidden else self.lm_head(x)

    def attention_mask(self, t: int, document_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                       kv_cache: KVCache | None, device: Any) -> Any:
        """The mask all layers share for this batch: a flex BlockMask, a dense mask, or None (causal)."""
        packed_only = document_ids is not None and kv_cache is None and attention_mask is None
        use_flex = self.attn_impl == "flex" or (self.attn_impl == "auto" and document_ids is not None
                                                and document_ids.is_cuda)
        if packed_only and use_flex and flex_available():
            return document_block_mask(document_ids)
        return attention_mask_for(t, document_ids, attention_mask, kv_cache, device)

    def new_kv_cache(self, batch_size: int, max_len: int) -> KVCache:
        p = self.lm_head.weight
        return KVCache(self.config, batch_size, max_len, device=p.device, dtype=p.dtype)
