"""A tiny random InfiR-VL (SigLIP architecture + projector + micro Llama) shared by the VLM tests."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from infir.model.llama import PRESETS, Llama
from infir.model.tokenizer import train_bpe_tokenizer
from infir.vlm.config import VisionConfig

TINY_VISION = VisionConfig(preset="tiny", image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
                           intermediate_size=64, aspect="pad")
IMAGE_TOKEN = "<|reserved_special_token_3|>"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    texts = ["Click the red circle.", "Describe the screen.", "A mobile screen with a Save button.",
             '<tool_call>{"name": "click", "arguments": {"point": [125, 875]}}</tool_call>'] * 30
    return train_bpe_tokenizer(texts, vocab_size=400)


@pytest.fixture()
def tiny_vlm(tiny_tokenizer):
    from infir.vlm.model import build_vlm

    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["micro"], vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              bos_token_id=tiny_tokenizer.bos_token_id, pad_token_id=tiny_tokenizer.pad_token_id)
    return build_vlm(TINY_VISION, Llama(cfg), tiny_tokenizer, IMAGE_TOKEN)
