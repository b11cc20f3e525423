"""Tokenized shards and the packed loader: contract, exact mixture, determinism, resumable state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from infir.data.tokens import TokenStream, write_token_shards
from infir.train.loss import IGNORE_INDEX
from infir.train.tokenized import PackedLoader, pack_row


def test_shards_hold_documents_with_eos_and_quarantine_bad_records(tmp_path, tokenizer_dir) -> None:
    from infir.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    records = [{"text": "the cat sat"}, {"text": ""}, {"body": "no text"}, {"text": "two dogs ran"}]
    index = write_token_shards(records, tok, tmp_path / "src", shard_tokens=4)
    end = tok.convert_tokens_to_ids("<|end_of_text|>")
    assert index["documents"] == 2 and index["quarantined"] == 2 and len(index["shards"]) == 2
    quarantine = [json.loads(x) for x in (tmp_path / "src" / "quarantine.jsonl").read_text().splitlines()]
    assert [q["record_number"] for q in quarantine] == [1, 2] and all(q["reason"] for q in quarantine)
    stream = TokenStream(tmp_path / "src")
    tokens = stream.read(0, stream.num_tokens).tolist()
    first = [tok.bos_token_id, *tok("the cat sat", add_special_tokens=False)["input_ids"], end]
    assert tokens[: len(first)] == first and tokens[-1] == end and stream.eos_token_id == end
    assert stream.read(stream.num_tokens - 1, 3).tolist() == [end, *tokens[:2]]  # wraps around


def test_pack_row_restarts_positions_and_separates_documents() -> None:
    eos = 9
    row = pack_row(np.array([5, 6, eos, 7, 8, 4, eos, 3, 2]), eos)
    assert row["input_ids"].tolist() == [5, 6, eos, 7, 8, 4, eos, 3]
    assert row["labels"].tolist() == [6, eos, IGNORE_INDEX, 8, 4, eos, IGNORE_INDEX, 2]
    assert row["document_ids"].tolist() == [0, 0, 0, 1, 1, 1, 1, 2]
    assert row["position_ids"].tolist() == [0, 1, 2, 0, 1, 2, 3, 0]


def test_weighted_mixture_is_exact(token_data) -> None:
    loader = PackedLoader([token_data / "web", token_data / "math"], [3.0, 1.0], seq_len=16, micro_batch_size=4)
    for _ in range(10):
        next(loader)
    assert loader.rows_per_source == [30, 10]


def test_loader_resumes_from_state_and_ranks_split_the_same_rows(token_data) -> None:
    sources = [token_data / "web", token_data / "math"]
    single = PackedLoader(sources, [1, 1], seq_len=32, micro_batch_size=2)
    rows = [next(single) for _ in range(6)]
    # resume mid-way from a saved state
    fresh = PackedLoader(sources, [1, 1], seq_len=32, micro_batch_size=2)
    for _ in range(3):
        next(fresh)
    resumed = PackedLoader(sources, [1, 1], seq_len=32, micro_batch_size=2)
    resumed.load_state_dict(fresh.state_dict())
    for expected in rows[3:]:
        assert torch.equal(next(resumed)["input_ids"], expected["input_ids"])
    # two ranks: rank r takes global micro-batches r, r+2, ... of the single-process order
    ranks = [PackedLoader(sources, [1, 1], seq_len=32, micro_batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    for step in range(3):
        for r in (0, 1):
            batch = next(ranks[r])
            assert set(batch) == {"input_ids", "labels", "position_ids", "document_ids"}
            assert torch.equal(batch["labels"], rows[2 * step + r]["labels"])
    assert ranks[0].state_dict() == ranks[1].state_dict()
    assert ranks[0].state_dict()["rows_per_source"] == single.state_dict()["rows_per_source"]


def test_missing_source_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="index.json"):
        TokenStream(tmp_path)
