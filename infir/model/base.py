"""The seam: what the trainer, the inference engine and the exporter may rely on in a model.

They hold a `CausalLM` (and its `ModelConfig`), never a concrete architecture class; which class a folder or a
preset becomes is the registry's business (`infir.model.registry`). An architecture implements:

- `config`: a `ModelConfig` (sizes, token ids, `to_hf_dict()` for `config.json`, `num_parameters()`);
- `forward(input_ids, position_ids, document_ids, kv_cache, attention_mask, return_hidden, inputs_embeds)`:
  logits [B, T, V], or final hidden states with `return_hidden` (the trainer's chunked loss applies `lm_head`);
- `lm_head`, `embed_tokens` (the VLM splices image features into the embeddings), `layers` (the decoder
  blocks: activation checkpointing, torch.compile and FSDP2 wrap them one by one);
- `new_kv_cache(batch, max_len)` and `decode_step(token_ids, positions, slot, cache)`: the fixed-shape
  one-token step that `infir.generation.static_decode` captures as a CUDA graph;
- `reset_buffers(device)` / `tie_weights()`: after weights were assigned into a model built on the meta device.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


class KVCache:
    """A preallocated key/value cache for batched generation.

    `valid[b, j]` says whether cache slot j of row b holds a real token (left padding leaves holes).
    """

    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, batch_size: int, max_len: int,
                 device: Any = "cpu", dtype: torch.dtype = torch.float32) -> None:
        shape = (batch_size, num_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.shape[2]
        self.k[layer][:, :, self.length : self.length + t] = k
        self.v[layer][:, :, self.length : self.length + t] = v
        end = self.length + t
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (finished generations leave the batch)."""
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        self.valid = self.valid.index_select(0, rows)


@runtime_checkable
class ModelConfig(Protocol):
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_id: int | list[int] | None
    pad_token_id: int | None

    def to_hf_dict(self) -> dict[str, Any]: ...

    def num_parameters(self) -> int: ...


@runtime_checkable
class CausalLM(Protocol):
    config: Any  # a ModelConfig
    lm_head: nn.Module

    @property
    def embed_tokens(self) -> nn.Module: ...

    @property
    def layers(self) -> nn.ModuleList: ...

    def forward(self, input_ids: torch.Tensor | None, position_ids: torch.Tensor | None = None,
                document_ids: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None, return_hidden: bool = False,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor: ...

    def new_kv_cache(self, batch_size: int, max_len: int) -> KVCache: ...

    def decode_step(self, token_ids: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor,
                    cache: KVCache) -> torch.Tensor: ...

    def reset_buffers(self, device: Any = None) -> None: ...

    def tie_weights(self) -> None: ...


def is_causal_lm(obj: Any) -> bool:
    """True for an infir causal LM (an nn.Module implementing `CausalLM`), False for wrappers and HF models."""
    return isinstance(obj, nn.Module) and isinstance(obj, CausalLM)
