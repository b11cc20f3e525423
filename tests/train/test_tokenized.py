"""Tokenized shards and the packed loader: contract, exact mixture, determinism, resumable state."""

from __future__ import annotations

import json
from pathlib import Path

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


def _domain_records(texts: list[str]) -> list[dict]:
    rows: list[dict] = []
    for i, t in enumerate(texts):
        domain = ("web", "math", "code")[i % 3]
        rows.append({"id": str(i), "text": t if i % 11 else "  ", "metadata": {"domain": domain}})
    return rows


def _route(rec: dict) -> str:
    return rec["metadata"]["domain"]


def _source_contents(folder) -> tuple[dict, list[int], list[str]]:
    index = json.loads((folder / "index.json").read_text())
    tokens = [t for s in index["shards"] for t in np.load(folder / s["file"]).tolist()]
    q = (folder / "quarantine.jsonl").read_text().splitlines() if (folder / "quarantine.jsonl").exists() else []
    return index, tokens, q


def test_streaming_tokenizer_by_domain_equals_one_source_at_a_time_and_resumes(tmp_path, tokenizer_dir,
                                                                               monkeypatch, make_texts) -> None:
    from infir.data import tokens as T
    from infir.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    rows = _domain_records(make_texts(120, 5))
    counts = T.write_token_sources(iter(rows), tok, tmp_path / "all", _route, shard_tokens=300, batch_size=4)
    assert counts == {"code": 40, "math": 40, "web": 40}
    for domain in counts:  # the same folders write_token_shards makes from each domain's records alone
        T.write_token_shards([r for r in rows if _route(r) == domain], tok, tmp_path / "ref" / domain,
                             shard_tokens=300, batch_size=5)
        got, want = _source_contents(tmp_path / "all" / domain), _source_contents(tmp_path / "ref" / domain)
        assert got == want and len(got[0]["shards"]) > 2 and got[2]
        assert np.load(tmp_path / "all" / domain / "shard_00000.npy", mmap_mode="r").dtype == np.uint32

    def crash_after(n: int):
        for i, row in enumerate(rows):
            if i == n:
                raise KeyboardInterrupt("killed")
            yield row

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):  # killed mid-stream, between checkpoints
        T.write_token_sources(crash_after(77), tok, out, _route, shard_tokens=300, batch_size=4, checkpoint_every=10)
    progress = json.loads((out / ".partial" / "progress.json").read_text())
    assert progress["records"] == 70 and not (out / "web").exists()
    seen = []
    real_replace = T.os.replace

    def replace_once(a, b):  # killed again while moving the finished sources into place
        if Path(a).parent.name == ".partial":
            if seen:
                raise KeyboardInterrupt("killed")
            seen.append(b)
        real_replace(a, b)

    monkeypatch.setattr(T.os, "replace", replace_once)
    resumed = iter(rows)
    with pytest.raises(KeyboardInterrupt):
        T.write_token_sources(resumed, tok, out, _route, shard_tokens=300, batch_size=4, checkpoint_every=10)
    assert next(resumed, None) is None  # consumed the whole stream once (the first 70 skipped, not tokenized)
    monkeypatch.setattr(T.os, "replace", real_replace)
    assert T.write_token_sources(iter([]), tok, out, _route) == counts  # publishes what was finished
    for domain in counts:
        assert _source_contents(out / domain) == _source_contents(tmp_path / "all" / domain)
    assert not (out / ".partial").exists()

    def untouched():
        raise AssertionError("a finished job must not read its records again")
        yield {}

    assert T.write_token_sources(untouched(), tok, out, _route) == counts


def test_window_permutation_is_a_seeded_bijection() -> None:
    from infir.train.tokenized import WindowPermutation

    for n in (1, 2, 3, 5, 17, 64, 1000, 4099):
        perm = WindowPermutation(n, key=7)
        assert sorted(perm(i) for i in range(n)) == list(range(n))
    a = [WindowPermutation(1000, key=1)(i) for i in range(1000)]
    b = [WindowPermutation(1000, key=2)(i) for i in range(1000)]
    assert a != b and a != list(range(1000))
    assert sum(x == i for i, x in enumerate(a)) < 10  # looks random: few fixed points
    with pytest.raises(IndexError):
        WindowPermutation(10, key=0)(10)


def test_shuffled_loader_reads_every_window_once_per_epoch_across_shards(token_data) -> None:
    source = token_data / "web"
    stream = TokenStream(source)
    assert len(stream.index["shards"]) >= 3
    seq = 16
    loader = PackedLoader([source], None, seq_len=seq, micro_batch_size=1, seed=3)
    windows = loader.windows[0]
    assert windows == stream.num_tokens // seq
    epoch0 = [loader.window_start(0, n) for n in range(windows)]
    epoch1 = [loader.window_start(0, n) for n in range(windows, 2 * windows)]
    for starts in (epoch0, epoch1):
        offset = starts[0] % seq
        assert sorted(starts) == [offset + k * seq for k in range(windows)]  # each window once
    assert epoch0 != epoch1
    shard_of = np.searchsorted(stream.offsets, epoch0[:8], side="right") - 1
    assert len(set(shard_of.tolist())) >= 2 and epoch0[:8] != sorted(epoch0[:8])
    rows = [next(loader)["input_ids"][0] for _ in range(3)]
    assert torch.equal(rows[1], torch.from_numpy(stream.read(epoch0[1], seq + 1)[:-1]))
    plain = PackedLoader([source], None, seq_len=seq, micro_batch_size=1, shuffle=False)
    assert [plain.window_start(0, n) for n in range(4)] == [0, 16, 32, 48]
    other_seed = PackedLoader([source], None, seq_len=seq, micro_batch_size=1, seed=4)
    assert [other_seed.window_start(0, n) for n in range(windows)] != epoch0
    with pytest.raises(ValueError, match="shuffle"):
        plain.load_state_dict(loader.state_dict())
    old_checkpoint = {k: v for k, v in plain.state_dict().items() if k not in ("shuffle", "seed")}
    with pytest.raises(ValueError, match="shuffle"):  # written before shuffling existed: stream order
        loader.load_state_dict(old_checkpoint)
    plain.load_state_dict(old_checkpoint)


def test_documents_end_with_the_familys_end_of_text_not_an_end_of_turn() -> None:
    """Regression: a Qwen2.5-Instruct-style tokenizer (eos = <|im_end|>) ended pretraining documents with the
    end-of-turn token; documents end with the family's end of text (<|endoftext|>) as the registry says."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from infir.data.tokens import document_end_id

    raw = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    tok.add_special_tokens({"additional_special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    assert document_end_id(tok) == tok.convert_tokens_to_ids("<|endoftext|>") != tok.eos_token_id


def test_special_token_text_inside_a_document_stays_text(tmp_path, tokenizer_dir) -> None:
    """Regression: a page quoting `<|end_of_text|>` put a document end (and `<|start_header_id|>` a chat header)
    into the pretraining stream; only the writer's framing holds special ids now."""
    from infir.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    text = "GPT models end text with <|end_of_text|> and chats with <|start_header_id|>user"
    write_token_shards([{"text": text}], tok, tmp_path / "src", shard_tokens=1 << 10)
    stream = TokenStream(tmp_path / "src")
    tokens = stream.read(0, stream.num_tokens).tolist()
    end, header = tok.convert_tokens_to_ids("<|end_of_text|>"), tok.convert_tokens_to_ids("<|start_header_id|>")
    assert tokens[0] == tok.bos_token_id and tokens[-1] == end
    assert end not in tokens[1:-1] and header not in tokens
    assert tok.decode(tokens[1:-1]) == text  # nothing lost: the markers are spelled in ordinary tokens
    assert tok("a <|end_of_text|>", add_special_tokens=False)["input_ids"][-1] == end  # the tokenizer itself unchanged
