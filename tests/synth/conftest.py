"""Tiny real models for synthesis tests: a teacher LM folder and a sequence-classification reward model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TEXTS = [
    "Give three tips for staying healthy. Eat well, sleep enough and exercise.",
    "Step 1: read the question. Step 2: compute 48 / 2 = 24. The answer is 72.",
    "def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\n",
    "Rewrite the instruction so that it needs more reasoning. Rate quality and difficulty from 1 to 5.",
] * 20


def make_teacher_dir(out: Path, seed: int = 0) -> tuple[Path, object]:
    from infir.model.hf_io import save_model
    from infir.model.llama import PRESETS, Llama
    from infir.model.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(TEXTS, vocab_size=512)
    cfg = PRESETS["micro"]
    cfg = type(cfg)(**{**cfg.__dict__, "vocab_size": len(tokenizer), "rope_scaling": None,
                       "max_position_embeddings": 4096, "bos_token_id": tokenizer.bos_token_id,
                       "eos_token_id": tokenizer.eos_token_id})
    torch.manual_seed(seed)
    model = Llama(cfg)
    with torch.no_grad():  # larger than the init so sampled outputs vary with prompt and seed
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return save_model(model, out, tokenizer=tokenizer), tokenizer


def make_reward_model_dir(out: Path, tokenizer, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, num_labels=1,
                      pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def synth_models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("synth-models")
    teacher, tokenizer = make_teacher_dir(root / "teacher")
    return {"teacher": Path(teacher), "reward": make_reward_model_dir(root / "reward", tokenizer)}
