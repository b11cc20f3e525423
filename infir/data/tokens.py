"""Tokenized pretraining shards: the format (written here, read by the trainer's packed loader).

On disk a *source* is a folder:
    index.json          {"format": "infir-tokens-v1", "dtype": "uint32", "eos_token_id", "bos_token_id",
                         "tokens", "documents", "quarantined", "shards": [{"file", "tokens", "documents"}]}
    shard_00000.npy     uint32 token ids; every document is [BOS] tokens EOS, back to back
    quarantine.jsonl    records that could not be tokenized, with the reason (only if any)

`TokenStream` reads one source as an endless token stream (memory-mapped); `infir.train.tokenized`
packs training rows from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from infir.utils.io import atomic_path, atomic_write_json, write_jsonl
from infir.utils.log import get_logger

FORMAT = "infir-tokens-v1"
log = get_logger(__name__)


def _encode_batch(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if hasattr(tokenizer, "encode_batch"):  # a `tokenizers.Tokenizer`
        return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]  # transformers tokenizer


def _special_id(tokenizer: Any, name: str) -> int | None:
    value = getattr(tokenizer, f"{name}_token_id", None)
    return int(value) if value is not None else None


def document_end_id(tokenizer: Any) -> int | None:
    """The token that ends a plain document: Llama 3's `<|end_of_text|>` when present, else eos."""
    if hasattr(tokenizer, "convert_tokens_to_ids") and hasattr(tokenizer, "get_vocab"):
        if "<|end_of_text|>" in tokenizer.get_vocab():
            return int(tokenizer.convert_tokens_to_ids("<|end_of_text|>"))
    elif hasattr(tokenizer, "token_to_id") and tokenizer.token_to_id("<|end_of_text|>") is not None:
        return int(tokenizer.token_to_id("<|end_of_text|>"))
    return _special_id(tokenizer, "eos")


def write_token_shards(
    records: Iterable[dict],
    tokenizer: Any,
    out_dir: str | Path,
    *,
    text_key: str = "text",
    shard_tokens: int = 1 << 27,
    add_bos: bool = True,
    eos_token_id: int | None = None,
    batch_size: int = 256,
    source: str | None = None,
) -> dict:
    """Tokenize text records into a source folder (see module docstring); returns its index.

    EOS defaults to `<|end_of_text|>` (Llama 3's end of a plain document), else the tokenizer's eos.
    Records without a non-empty string under `text_key` go to quarantine.jsonl with a reason.
    The folder is written atomically: a crash leaves no half source behind.
    """
    out_dir = Path(out_dir)
    eos = eos_token_id if eos_token_id is not None else document_end_id(tokenizer)
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id=")
    bos = _special_id(tokenizer, "bos") if add_bos else None
    quarantined: list[dict] = []
    shards: list[dict] = []
    totals = {"tokens": 0, "documents": 0}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        pending: list[np.ndarray] = []
        pending_tokens = pending_docs = 0

        def flush() -> None:
            nonlocal pending, pending_tokens, pending_docs
            if not pending:
                return
            name = f"shard_{len(shards):05d}.npy"
            np.save(tmp / name, np.concatenate(pending).astype(np.uint32))
            shards.append({"file": name, "tokens": pending_tokens, "documents": pending_docs})
            pending, pending_tokens, pending_docs = [], 0, 0

        def encode(batch: list[str]) -> None:
            nonlocal pending_tokens, pending_docs
            for ids in _encode_batch(tokenizer, batch):
                doc = np.asarray(([bos] if bos is not None else []) + list(ids) + [eos], dtype=np.uint32)
                pending.append(doc)
                pending_tokens += len(doc)
                pending_docs += 1
                totals["tokens"] += len(doc)
                totals["documents"] += 1
                if pending_tokens >= shard_tokens:
                    flush()

        batch: list[str] = []
        for n, record in enumerate(records):
            text = record.get(text_key) if isinstance(record, dict) else None
            if not isinstance(text, str) or not text.strip():
                reason = f"no non-empty string under {text_key!r}"
                quarantined.append({"record_number": n, "reason": reason, "record": record})
                continue
            batch.append(text)
            if len(batch) >= batch_size:
                encode(batch)
                batch = []
        if batch:
            encode(batch)
        flush()
        if quarantined:
            write_jsonl(tmp / "quarantine.jsonl", quarantined)
        index = {
            "format": FORMAT, "dtype": "uint32", "source": source or out_dir.name,
            "eos_token_id": eos, "bos_token_id": bos, "quarantined": len(quarantined),
            **totals, "shards": shards,
        }
        atomic_write_json(tmp / "index.json", index)
    log.info("tokenized %d documents (%d tokens, %d quarantined) into %s",
             totals["documents"], totals["tokens"], len(quarantined), out_dir)
    return index


def find_sources(data_dir: str | Path) -> list[Path]:
    """Source folders under data_dir (data_dir itself when it is one)."""
    data_dir = Path(data_dir)
    if (data_dir / "index.json").exists():
        return [data_dir]
    found = sorted(p.parent for p in data_dir.glob("*/index.json"))
    if not found:
        raise FileNotFoundError(f"no tokenized sources (folders with index.json) under {data_dir}")
    return found


class TokenStream:
    """One source as an endless stream of tokens over its shards (memory-mapped)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        index_file = self.path / "index.json"
        if not index_file.exists():
            raise FileNotFoundError(f"{self.path}: not a tokenized source (no index.json)")
        self.index = json.loads(index_file.read_text())
        if self.index.get("format") != FORMAT:
            raise ValueError(f"{self.path}: unknown token shard format {self.index.get('format')!r}")
        self.shards = [np.load(self.path / s["file"], mmap_mode="r") for s in self.index["shards"]]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.num_tokens = int(self.offsets[-1])
        if self.num_tokens < 2:
            raise ValueError(f"{self.path}: source holds fewer than 2 tokens")
        self.eos_token_id = int(self.index["eos_token_id"])

    def read(self, start: int, length: int) -> np.ndarray:
        """`length` tokens from stream position `start`, wrapping around at the end."""
        out = np.empty(length, dtype=np.int64)
        filled, pos = 0, start % self.num_tokens
        while filled < length:
            shard = int(np.searchsorted(self.offsets, pos, side="right") - 1)
            local = pos - int(self.offsets[shard])
            take = min(length - filled, len(self.shards[shard]) - local)
            out[filled : filled + take] = self.shards[shard][local : local + take]
            filled += take
            pos = (pos + take) % self.num_tokens
        return out
