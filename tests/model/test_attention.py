"""Document masking: the flex attention BlockMask path equals the dense SDPA mask path."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from infir.model.attention import attend, dense_mask, document_block_mask, flex_available
from infir.model.llama import PRESETS, Llama

pytestmark = pytest.mark.skipif(not flex_available(), reason="flex attention needs torch >= 2.5")


def packed_document_ids() -> torch.Tensor:
    return torch.tensor([[0] * 10 + [1] * 30 + [2] * 24, [0] * 64])


def test_block_mask_attention_equals_dense_mask_attention() -> None:
    torch.manual_seed(0)
    docs = packed_document_ids()
    q, k, v = torch.randn(2, 4, 64, 16), torch.randn(2, 2, 64, 16), torch.randn(2, 2, 64, 16)
    dense = attend(q, k, v, dense_mask(64, docs, None, None, 0, "cpu"))
    flex = attend(q, k, v, document_block_mask(docs))
    assert torch.allclose(dense, flex, atol=1e-5)


def test_block_mask_skips_blocks_across_documents() -> None:
    # two 256-token documents: with 128-token blocks the cross-document block pair is never computed
    docs = torch.tensor([[0] * 256 + [1] * 256])
    mask = document_block_mask(docs)
    assert mask.to_dense()[0, 0].tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]


def test_model_flex_path_equals_sdpa_path_on_packed_batch() -> None:
    torch.manual_seed(0)
    model = Llama(dataclasses.replace(PRESETS["micro"], max_position_embeddings=256)).eval()
    docs = packed_document_ids()
    ids = torch.randint(0, model.config.vocab_size, docs.shape)
    starts = torch.tensor([[0] * 10 + [10] * 30 + [40] * 24, [0] * 64])
    pos = torch.arange(64)[None] - starts
    with torch.no_grad():
        model.attn_impl = "sdpa"
        dense = model(ids, position_ids=pos, document_ids=docs)
        model.attn_impl = "flex"
        flex = model(ids, position_ids=pos, document_ids=docs)
    assert torch.allclose(dense, flex, atol=1e-4), (dense - flex).abs().max()
    # and the third document alone gives the same logits as inside the pack
    with torch.no_grad():
        model.attn_impl = "auto"
        alone = model(ids[:1, 40:])
    assert torch.allclose(flex[:1, 40:], alone, atol=1e-4)
