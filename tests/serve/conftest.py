"""A tiny real model folder (micro Llama + trained byte-level BPE with the Llama 3 chat template)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Small language models can reason when trained on careful data.",
    "def add(a, b):\n    return a + b\n",
    "What is 12 plus 30? The answer is 42.",
    "Hello! How are you today? I am fine, thank you.",
] * 20


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    from infir.model.hf_io import save_model
    from infir.model.llama import PRESETS, Llama
    from infir.model.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(TEXTS, vocab_size=384)
    cfg = PRESETS["micro"]
    cfg = type(cfg)(**{**cfg.__dict__, "vocab_size": 384, "bos_token_id": tokenizer.bos_token_id,
                       "eos_token_id": tokenizer.convert_tokens_to_ids("<|eot_id|>")})
    torch.manual_seed(seed)
    model = Llama(cfg)
    with torch.no_grad():  # larger weights than the 0.02 init so greedy outputs vary with the prompt
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return save_model(model, out_dir, tokenizer=tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("serve") / "tiny-model")
