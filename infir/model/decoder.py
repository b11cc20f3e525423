"""The pre-norm RoPE decoder that Llama 3 and Qwen2 share: RMSNorm, grouped-query attention, SwiGLU MLP.

An architecture file (`llama.py`, `qwen2.py`) is its config (fields, defaults, the HF `config.json` mapping, presets),
its RoPE frequencies and its GGUF tensor transforms; the modules here are the same for both, parameterised by what
differs (`qkv_bias`: Qwen2's q/k/v projections carry biases, Llama's do not). Parameter names follow transformers'
`LlamaForCausalLM` / `Qwen2ForCausalLM`, so state dicts move between infir and transformers unchanged.

The model implements `infir.model.base.CausalLM` (what the trainer, the engine and the exporter use). It knows
nothing of parallelism, compilation or checkpoint formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from infir.model.attention import attend, dense_mask, document_block_mask, flex_available
from infir.model.base import KVCache


@dataclass
class DecoderConfig:
    """Fields every decoder of this family has; an architecture subclasses it with its own defaults."""

    model_type: ClassVar[str] = ""
    hf_architecture: ClassVar[str] = ""
    qkv_bias: ClassVar[bool] = False  # biases on q/k/v (Qwen2), fixed by the architecture
    rope_types: ClassVar[tuple[str, ...]] = ("default",)  # RoPE scalings this architecture implements
    # What transformers assumes when a config.json omits a key (differs from some of our dataclass defaults,
    # which describe the architecture's released models).
    hf_defaults: ClassVar[dict[str, Any]] = {"tie_word_embeddings": False, "rope_theta": 10000.0,
                                             "rms_norm_eps": 1e-6}

    vocab_size: int = 32000
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 16
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 64
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{self.model_type}: num_attention_heads {self.num_attention_heads} is not a multiple "
                             f"of num_key_value_heads {self.num_key_value_heads}")
        kind = rope_type(self.rope_scaling)
        if kind not in self.rope_types:
            raise ValueError(f"{self.model_type}: RoPE scaling {kind!r} is not implemented for this architecture "
                             f"(supported: {', '.join(self.rope_types)})")

    def num_parameters(self) -> int:
        d, f, v, kv = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_key_value_heads
        q_out, kv_out = self.num_attention_heads * self.head_dim, kv * self.head_dim
        attn = d * q_out * 2 + d * kv_out * 2 + ((q_out + 2 * kv_out) if self.qkv_bias else 0)
        layer = attn + 3 * d * f + 2 * d
        return v * d * (1 if self.tie_word_embeddings else 2) + self.num_hidden_layers * layer + d

    def hf_fields(self) -> dict[str, Any]:
        """The dataclass fields as `config.json` keys (an architecture adds its own keys on top)."""
        return asdict(self)

    def to_hf_dict(self) -> dict[str, Any]:
        """A `config.json` that transformers reads as this architecture's config."""
        d = self.hf_fields()
        d.update(architectures=[self.hf_architecture], model_type=self.model_type, hidden_act="silu",
                 attention_dropout=0.0, use_cache=True, torch_dtype="float32")
        return d

    @classmethod
    def from_hf_dict(cls, d: Mapping[str, Any]) -> DecoderConfig:
        """Read a `config.json` (transformers 4.x `rope_theta`/`rope_scaling` or 5.x `rope_parameters`)."""
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"{cls.model_type}: hidden_act {d['hidden_act']!r} is not supported (only silu)")
        known = {f.name for f in fields(cls)}
        kwargs = {**cls.hf_defaults, **{k: v for k, v in d.items() if k in known}}
        if d.get("head_dim") is None:
            kwargs["head_dim"] = d["hidden_size"] // d["num_attention_heads"]
        if d.get("num_key_value_heads") is None:
            kwargs["num_key_value_heads"] = d["num_attention_heads"]
        theta, scaling = rope_from_hf(d)
        kwargs["rope_scaling"] = scaling
        if theta is not None:
            kwargs["rope_theta"] = theta
        return cls(**kwargs)


def rope_type(scaling: Mapping[str, Any] | None) -> str:
    if not scaling:
        return "default"
    return str(scaling.get("rope_type", scaling.get("type", "default")))


def rope_from_hf(d: Mapping[str, Any]) -> tuple[float | None, dict[str, Any] | None]:
    """(rope_theta, rope_scaling or None) from either transformers layout of a config.json."""
    params = d.get("rope_parameters")
    if isinstance(params, Mapping) and "rope_scaling" not in d:  # transformers 5.x
        params = dict(params)
        theta = params.pop("rope_theta", d.get("rope_theta"))
        return theta, (params if rope_type(params) != "default" else None)
    scaling = d.get("rope_scaling")
    if scaling:
        scaling = {**scaling, "rope_type": rope_type(scaling)}
    return d.get("rope_theta"), (scaling if rope_type(scaling) != "default" else None)


def default_inv_freq(cfg: DecoderConfig) -> torch.Tensor:
    """theta^(-2i/d) for i < d/2 (float64, for architectures to scale)."""
    return 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))


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


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        h, kv, d, bias = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.qkv_bias
        self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, kv * d, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, kv * d, bias=bias)
        self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected (biases included), rotated queries and keys, and values: [B, heads, T, head_dim]."""
        b, t, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(b, t, cfg.num_attention_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Any,
                kv_cache: KVCache | None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
        out = attend(q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))

    def forward_static(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                       cache: KVCache, slot: torch.Tensor) -> torch.Tensor:
        """One token per row written at cache slot `slot` (a tensor), attending over every slot under `mask`."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)
        cache.k[self.layer_idx].index_copy_(2, slot, k)
        cache.v[self.layer_idx].index_copy_(2, slot, v)
        out = F.scaled_dot_product_attention(q, cache.k[self.layer_idx], cache.v[self.layer_idx], attn_mask=mask,
                                             enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Any,
                kv_cache: KVCache | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_cache)
        return x + self.mlp(self.post_attention_layernorm(x))

    def forward_static(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                       cache: KVCache, slot: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn.forward_static(self.input_layernorm(x), cos, sin, mask, cache, slot)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderBody(nn.Module):
    """Embeddings, decoder layers and final norm (HF's `model.` prefix)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DecoderLM(nn.Module):
    """A causal LM of this family; an architecture subclasses it and gives `rope_inv_freq`."""

    # How document masks are computed: "auto" = flex attention BlockMask on CUDA for packed training
    # batches (no cache, no padding mask), dense SDPA masks otherwise; "flex" or "sdpa" force one.
    attn_impl: str = "auto"

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = DecoderBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", self.rope_inv_freq(cfg), persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def rope_inv_freq(cfg: DecoderConfig) -> torch.Tensor:
        """Inverse RoPE frequencies [head_dim / 2] (float32); architectures with RoPE scalings override it."""
        return default_inv_freq(cfg).float()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    # --- the CausalLM protocol (infir.model.base) ---
    @property
    def embed_tokens(self) -> nn.Module:
        return self.model.embed_tokens

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    def _apply(self, fn: Any, recurse: bool = True) -> DecoderLM:
        """Module conversions (.to(dtype), .half(), .bfloat16()) keep the RoPE frequencies in float32:
        in bf16 each would be off by up to 0.4%, i.e. radians of angle error a few thousand positions in."""
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32:
            self.inv_freq = self.rope_inv_freq(self.config).to(self.inv_freq.device)
        return self

    def reset_buffers(self, device: Any = None) -> None:
        """Recompute the non-persistent RoPE buffer (after building on the meta device and loading weights)."""
        device = device if device is not None else self.model.norm.weight.device
        self.inv_freq = self.rope_inv_freq(self.config).to(device)

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def rope(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(
        self,
        input_ids: torch.Tensor | None,
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
        inputs_embeds: [B, T, hidden] input embeddings used instead of `input_ids` (the VLM splices image
        features in).
        """
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("give input_ids or inputs_embeds")
            inputs_embeds = self.model.embed_tokens(input_ids)
        x = inputs_embeds
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
        valid = kv_cache.valid if kv_cache is not None else None
        start = kv_cache.length if kv_cache is not None else 0
        return dense_mask(t, document_ids, attention_mask, valid, start, device)

    def new_kv_cache(self, batch_size: int, max_len: int) -> KVCache:
        p = self.model.norm.weight  # a float parameter even when the linear layers are quantized
        cfg = self.config
        return KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, batch_size, max_len,
                       device=p.device, dtype=p.dtype)

    def decode_step(self, token_ids: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor,
                    cache: KVCache) -> torch.Tensor:
        """One token per row with static shapes (what a CUDA graph captures): logits [B, V].

        token_ids/positions: [B, 1]; slot: a 1-element tensor, the cache slot written (its `valid` bit is set);
        attention covers all `max_len` cache slots under the cache's validity mask.
        """
        x = self.model.embed_tokens(token_ids)
        cos, sin = self.rope(positions, x.dtype)
        cache.valid.index_fill_(1, slot, True)
        mask = cache.valid[:, None, None, :]
        for layer in self.model.layers:
            x = layer.forward_static(x, cos, sin, mask, cache, slot)
        return self.lm_head(self.model.norm(x))[:, -1]
