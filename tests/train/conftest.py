"""Shared fixtures for the train room: a tiny tokenizer and two tokenized sources."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

WORDS = ("the cat sat on a mat while two dogs ran to the park and a bird sang about numbers like one "
         "two three four five plus minus equals because therefore proof lemma code def return if else").split()


def synthetic_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) + "." for _ in range(n)]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from infir.model.tokenizer import save_tokenizer, train_bpe_tokenizer

    tok = train_bpe_tokenizer(synthetic_texts(300, 0), vocab_size=320, num_special_tokens=16)
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="session")
def token_data(tmp_path_factory, tokenizer_dir) -> Path:
    """data/web (plain texts) and data/math (other texts), written through write_token_shards."""
    from infir.data.tokens import write_token_shards
    from infir.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    root = tmp_path_factory.mktemp("tokens")
    write_token_shards(({"text": t} for t in synthetic_texts(200, 1)), tok, root / "web", shard_tokens=2000)
    write_token_shards(({"text": t.upper()} for t in synthetic_texts(100, 2)), tok, root / "math",
                       shard_tokens=2000)
    return root



@pytest.fixture()
def make_texts():
    """synthetic_texts(n, seed) for tests that need raw texts."""
    return synthetic_texts
