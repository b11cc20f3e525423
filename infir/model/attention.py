"""Attention kernels for the Llama decoder: dense SDPA masks and flex attention block masks.

Two ways to keep packed documents apart:
- `dense_mask`: a boolean [B, 1, q, k] mask for `scaled_dot_product_attention` (CPU, generation
  with a KV cache, left padding). Simple, but O(T^2) memory.
- `document_block_mask`: a flex attention `BlockMask` built once per batch from `document_ids` and
  shared by all layers; blocks that cross documents are skipped entirely (the GPU training path).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

try:  # flex attention arrived in torch 2.5
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
except ImportError:  # pragma: no cover - older torch
    BlockMask = None  # type: ignore[assignment,misc]
    create_block_mask = flex_attention = None  # type: ignore[assignment]

_compiled_flex: Any = None


def flex_available() -> bool:
    return flex_attention is not None


def dense_mask(
    q_len: int,
    document_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    valid: torch.Tensor | None,
    start: int,
    device: Any,
) -> torch.Tensor | None:
    """Dense boolean mask [B, 1, q, k] (True = attend), or None for plain causal attention.

    valid: [B, k] slots of a KV cache holding real tokens (takes precedence over attention_mask).
    """
    if valid is None and document_ids is None and attention_mask is None:
        return None
    k_len = start + q_len
    q_pos = torch.arange(start, k_len, device=device)
    k_pos = torch.arange(k_len, device=device)
    mask = (k_pos[None, :] <= q_pos[:, None])[None, None]  # causal
    if document_ids is not None:
        same_doc = document_ids[:, :, None] == document_ids[:, None, :]
        mask = mask & same_doc[:, None]
    if valid is not None:
        mask = mask & valid[:, None, None, :k_len]
    elif attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, None, :]
    # A fully masked row (padding query) would give NaN: let it see itself.
    eye = (k_pos[None, :] == q_pos[:, None])[None, None]
    return mask | eye


def document_block_mask(document_ids: torch.Tensor, block_size: int = 128) -> Any:
    """A causal, document-separating flex attention BlockMask for a packed batch [B, T]."""
    if create_block_mask is None:
        raise RuntimeError("flex attention needs torch >= 2.5")
    b, t = document_ids.shape

    def causal_same_document(batch, head, q_idx, kv_idx):  # noqa: ANN001 - flex's mask_mod signature
        return (kv_idx <= q_idx) & (document_ids[batch, q_idx] == document_ids[batch, kv_idx])

    # On GPU the mask is built by a compiled kernel instead of materialising [B, T, T] first.
    return create_block_mask(
        causal_same_document, b, None, t, t, device=document_ids.device, BLOCK_SIZE=block_size,
        _compile=document_ids.is_cuda,
    )


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any) -> torch.Tensor:
    """Attention over [B, H, T, D] queries and [B, H_kv, S, D] keys/values (GQA) with any mask kind."""
    if BlockMask is not None and isinstance(mask, BlockMask):
        return _flex(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True)


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: Any) -> torch.Tensor:
    """flex attention; compiled into a fused kernel on CUDA (eager flex is a slow reference)."""
    global _compiled_flex
    if q.is_cuda:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        return _compiled_flex(q, k, v, block_mask=block_mask, enable_gqa=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=True)
