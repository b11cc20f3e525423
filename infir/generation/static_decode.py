"""A decode step with static shapes (the whole preallocated KV cache, a validity mask), for CUDA graphs.

A model's `forward` with a `KVCache` attends over a cache slice that grows every step, so each step has a
new shape. The model's `decode_step` (`infir.model.base.CausalLM`) writes the new key/value at a slot index
given as a tensor and attends over all `max_len` slots with the cache's `valid` mask: every step has the same
shapes and buffers, so `GraphedDecodeStep` can capture it once per batch with `torch.cuda.CUDAGraph` and replay
it, removing the per-step Python and kernel-launch overhead that dominates small-model decoding on GPU.
On CPU the eager step is only a reference (attending over the whole cache costs more there).
"""

from __future__ import annotations

from typing import Any

import torch


class StaticDecodeStep:
    """One token per row: logits [B, V] for token_ids [B, 1] at positions [B, 1] written to cache slot `slot`."""

    def __init__(self, model: Any, cache: Any) -> None:
        self.model, self.cache = model, cache

    @torch.inference_mode()
    def __call__(self, token_ids: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        return self.model.decode_step(token_ids, positions, slot, self.cache)


class GraphedDecodeStep:
    """`StaticDecodeStep` captured as a CUDA graph; inputs are copied into static buffers, then replayed.

    Capture again (a new instance) whenever the cache tensors are replaced, e.g. after finished
    rows are dropped from the batch.
    """

    def __init__(self, model: Any, cache: Any, batch_size: int) -> None:
        device = cache.valid.device
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
