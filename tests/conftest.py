"""Shared fixtures: where the real data lives; a tiny model folder; one torch thread for every test (2-core machines)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Tiny models: one thread beats two (thread overhead dominates, and subprocesses share the cores).
torch.set_num_threads(1)


def shared_data_dir() -> Path:
    """$INFIR_SHARED_DATA, else shared/data beside the checkout, else the workspace's /work/shared/data (a
    clone made elsewhere, e.g. under /tmp)."""
    if os.environ.get("INFIR_SHARED_DATA"):
        return Path(os.environ["INFIR_SHARED_DATA"])
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data folder (../shared/data); tests that need it skip when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder not found at {path} (set INFIR_SHARED_DATA)")
    return path


# A tiny infir model folder (micro Llama + a 512-token BPE tokenizer) shared by the eval and generation tests.
TINY_TEXTS = [
    "Question: what is 2 plus 3? Answer: 2 plus 3 is 5. #### 5",
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog. A B C D answer choices.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
] * 20


def make_tiny_model_dir(out: Path, seed: int = 0) -> Path:
    from infir.model.hf_io import save_model
    from infir.model.llama import PRESETS, Llama
    from infir.model.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(TINY_TEXTS, vocab_size=512)
    cfg = PRESETS["micro"]
    cfg = type(cfg)(
        **{
            **cfg.__dict__,
            "vocab_size": len(tokenizer),
            "rope_scaling": None,
            "max_position_embeddings": 4096,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
    )
    torch.manual_seed(seed)
    model = Llama(cfg)
    with torch.no_grad():  # larger weights than the init so greedy outputs vary between prompts
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    return save_model(model, out, tokenizer=tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("eval") / "tiny-llama")

