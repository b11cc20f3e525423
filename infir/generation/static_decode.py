"""A decode step with static shapes (the whole preallocated KV cache, a validity mask), for CUDA graphs.

`Llama.forward` with a `KVCache` attends over a cache slice that grows every step, so each step has a
new shape. `StaticDecodeStep` writes the new key/value at a slot index given as a tensor and attends
over all `max_len` slots with the cache's `valid` mask: every step has the same shapes and buffers,
so `GraphedDecodeStep` can capture it once per batch with `torch.cuda.CUDAGraph` and replay it,
removing the per-step Python and kernel-launch overhead that dominates small-model decoding on GPU.
On CPU the eager step is only a reference (attending over the whole cache costs more there).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from infir.model.llama import apply_rope


class StaticDecodeStep:
    """One token per row: logits [B, V] for token_ids [B, 1] at positions [B, 1] written to cache slot `slot`."""

    def __init__(self, model: Any, cache: Any) -> None:
        self.model, self.cache = model, cache

    @torch.inference_mode()
    def __call__(self, token_ids: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        model, cache, cfg = self.model, self.cache, self.model.config
        b = token_ids.shape[0]
        x = model.model.embed_tokens(token_ids)
        cos, sin = model.rope(positions, x.dtype)
        cache.valid.index_fill_(1, slot, True)
        mask = cache.valid[:, None, None, :]
        for i, layer in enumerate(model.model.layers):
            attn, h = layer.self_attn, layer.input_layernorm(x)
            q = attn.q_proj(h).view(b, 1, cfg.num_attention_heads, cfg.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, 1, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(b, 1, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            cache.k[i].index_copy_(2, slot, k)
            cache.v[i].index_copy_(2, slot, v)
            out = F.scaled_dot_product_attention(q, cache.k[i], cache.v[i], attn_mask=mask, enable_gqa=True)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(b, 1, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return model.lm_head(model.model.norm(x))[:, -1]


class GraphedDecodeStep:
    """`StaticDecodeStep` captured as a CUDA graph; inputs are copied into static buffers, then replayed.

    Capture again (a new instance) whenever the cache tensors are replaced, e.g. after finished
    rows are dropped from the batch.
    """

    def __init__(self, model: Any, cache: Any, batch_size: int) -> None:
        device = model.lm_head.weight.device
        self.step = StaticDecodeStep(model, cache)
        self.ids = torch.zeros((batch_size, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros((batch_size, 1), dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.slot.fill_(cache.max_len - 1)  # warm-up writes go to the last slot, which is written again later
        valid_before = cache.valid.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.step(self.ids, self.pos, self.slot)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.step(self.ids, self.pos, self.slot)
        cache.valid.copy_(valid_before)

    def __call__(self, token_ids: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(token_ids)
        self.pos.copy_(positions)
        self.slot.copy_(slot)
        self.graph.replay()
        return self.logits
