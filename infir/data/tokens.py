"""Tokenized pretraining shards: the format (written here, read by the trainer's packed loader).

On disk a *source* is a folder:
    index.json          {"format": "infir-tokens-v1", "dtype": "uint32", "eos_token_id", "bos_token_id",
                         "tokens", "documents", "quarantined", "shards": [{"file", "tokens", "documents"}]}
    shard_00000.npy     uint32 token ids; every document is [BOS] tokens EOS, back to back
    quarantine.jsonl    records that could not be tokenized, with the reason (only if any)

`write_token_shards` writes one source, `write_token_sources` routes one stream of records into one source per
domain (or any key); both stream with fixed memory. `TokenStream` reads one source as an endless token stream
(memory-mapped); `infir.train.tokenized` packs training rows from it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from infir.utils.io import atomic_path, atomic_write_json
from infir.utils.log import get_logger

FORMAT = "infir-tokens-v1"
log = get_logger(__name__)


def _encode_batch(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Documents -> ids, a special token's text inside a document read as plain text.

    A web page that quotes `<|end_of_text|>` or `<|im_start|>` must not put a document end or a chat turn into
    the pretraining stream (tiktoken's `disallowed_special=()` reading, as nanochat and Llama's own data code
    do); the special ids come only from the framing (BOS, end of text) that `_Writer` adds.
    """
    backend = tokenizer if hasattr(tokenizer, "encode_batch") else getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow transformers tokenizer: its own option
        return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    before = backend.encode_special_tokens
    backend.encode_special_tokens = True
    try:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    finally:
        backend.encode_special_tokens = before


def _special_id(tokenizer: Any, name: str) -> int | None:
    value = getattr(tokenizer, f"{name}_token_id", None)
    return int(value) if value is not None else None


def document_end_id(tokenizer: Any) -> int | None:
    """The token that ends a plain document: the tokenizer family's end of text (Llama 3's `<|end_of_text|>`,
    Qwen2's `<|endoftext|>`: the model registry knows them; never an end-of-turn such as `<|im_end|>`), else eos."""
    from infir.model.registry import ARCHITECTURES, special_ids

    if hasattr(tokenizer, "get_vocab") and hasattr(tokenizer, "convert_tokens_to_ids"):
        end = special_ids(tokenizer)["end_of_text"]
        if end is not None:
            return int(end)
    elif hasattr(tokenizer, "token_to_id"):  # a bare `tokenizers.Tokenizer`
        for arch in ARCHITECTURES.values():
            if tokenizer.token_to_id(arch.end_of_text) is not None:
                return int(tokenizer.token_to_id(arch.end_of_text))
    return _special_id(tokenizer, "eos")


class _ShardFile:
    """One shard_NNNNN.npy being appended to: the .npy header is written first with length 0 and rewritten in
    place at close (numpy pads headers so the length fits without moving the data)."""

    def __init__(self, path: Path, tokens: int = 0) -> None:
        self.path, self.tokens = path, tokens
        if tokens:  # reopen after a checkpoint: drop whatever was written after it
            self.f = open(path, "r+b")
            self.f.seek(0)
            self.header = self._header(0)
            self.f.truncate(self.header + 4 * tokens)
            self.f.seek(0, os.SEEK_END)
        else:
            self.f = open(path, "wb")
            self.header = self._header(0)

    def _header(self, n: int) -> int:
        np.lib.format.write_array_header_1_0(self.f, {"descr": "<u4", "fortran_order": False, "shape": (n,)})
        return self.f.tell()

    def write(self, tokens: np.ndarray) -> None:
        self.f.write(tokens.astype("<u4", copy=False).tobytes())
        self.tokens += len(tokens)

    def sync(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.seek(0)
        if self._header(self.tokens) != self.header:
            raise RuntimeError(f"{self.path}: .npy header grew; cannot finish the shard in place")
        self.f.close()


class SourceWriter:
    """Streams documents into one source folder (the format above) with fixed memory: tokens go straight to
    the open shard file, which is closed once it holds `shard_tokens` (at a document end) and the next one
    opened; quarantined records are appended to quarantine.jsonl. `state()`/`restore` checkpoint it."""

    def __init__(self, folder: Path, source: str, eos: int, bos: int | None, shard_tokens: int,
                 state: dict | None = None) -> None:
        self.folder, self.source, self.eos, self.bos, self.shard_tokens = folder, source, eos, bos, shard_tokens
        folder.mkdir(parents=True, exist_ok=True)
        st = state or {}
        self.shards: list[dict] = list(st.get("shards", []))
        self.records = int(st.get("records", 0))
        self.quarantined = int(st.get("quarantined", 0))
        self.quarantine_bytes = int(st.get("quarantine_bytes", 0))
        self.open: _ShardFile | None = None
        self.open_documents = 0
        if st.get("open"):
            self.open = _ShardFile(folder / st["open"]["file"], int(st["open"]["tokens"]))
            self.open_documents = int(st["open"]["documents"])
        keep = {s["file"] for s in self.shards} | ({self.open.path.name} if self.open else set())
        for stale in folder.glob("shard_*.npy"):  # written after the checkpoint: will be written again
            if stale.name not in keep:
                stale.unlink()
        quarantine = folder / "quarantine.jsonl"
        if quarantine.exists():
            with open(quarantine, "r+b") as f:
                f.truncate(self.quarantine_bytes)

    def quarantine(self, record: Any, reason: str) -> None:
        line = json.dumps({"record_number": self.records, "reason": reason, "record": record},
                          ensure_ascii=False, default=str) + "\n"
        with open(self.folder / "quarantine.jsonl", "ab") as f:
            self.quarantine_bytes += f.write(line.encode("utf-8"))
        self.records += 1
        self.quarantined += 1

    def add(self, ids: list[int]) -> None:
        doc = np.asarray(([self.bos] if self.bos is not None else []) + list(ids) + [self.eos], dtype=np.uint32)
        if self.open is None:
            self.open = _ShardFile(self.folder / f"shard_{len(self.shards):05d}.npy")
            self.open_documents = 0
        self.open.write(doc)
        self.open_documents += 1
        self.records += 1
        if self.open.tokens >= self.shard_tokens:
            self._close_shard()

    def _close_shard(self) -> None:
        if self.open is None:
            return
        self.open.close()
        self.shards.append({"file": self.open.path.name, "tokens": self.open.tokens, "documents": self.open_documents})
        self.open = None

    def state(self) -> dict:
        """Everything needed to continue after a crash (the files are synced first)."""
        if self.open is not None:
            self.open.sync()
        return {"shards": list(self.shards), "records": self.records, "quarantined": self.quarantined,
                "quarantine_bytes": self.quarantine_bytes,
                "open": {"file": self.open.path.name, "tokens": self.open.tokens, "documents": self.open_documents}
                if self.open is not None else None}

    def finish(self) -> dict:
        """Close the last shard and write index.json; returns the index."""
        self._close_shard()
        index = {
            "format": FORMAT, "dtype": "uint32", "source": self.source,
            "eos_token_id": self.eos, "bos_token_id": self.bos, "quarantined": self.quarantined,
            "tokens": sum(s["tokens"] for s in self.shards), "documents": sum(s["documents"] for s in self.shards),
            "shards": self.shards,
        }
        atomic_write_json(self.folder / "index.json", index)
        return index


def _special_ids(tokenizer: Any, add_bos: bool, eos_token_id: int | None) -> tuple[int, int | None]:
    eos = eos_token_id if eos_token_id is not None else document_end_id(tokenizer)
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; pass eos_token_id=")
    return eos, _special_id(tokenizer, "bos") if add_bos else None


def _text_of(record: Any, text_key: str) -> str | None:
    text = record.get(text_key) if isinstance(record, dict) else None
    return text if isinstance(text, str) and text.strip() else None


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
    Streams with fixed memory (one batch of texts); the folder is written atomically: a crash leaves no half
    source behind.
    """
    out_dir = Path(out_dir)
    eos, bos = _special_ids(tokenizer, add_bos, eos_token_id)
    with atomic_path(out_dir) as tmp:
        writer = SourceWriter(tmp, source or out_dir.name, eos, bos, shard_tokens)
        batch: list[str] = []
        for record in records:
            text = _text_of(record, text_key)
            if text is None:
                for ids in _encode_batch(tokenizer, batch) if batch else []:  # keep record numbers in order
                    writer.add(ids)
                batch = []
                writer.quarantine(record, f"no non-empty string under {text_key!r}")
                continue
            batch.append(text)
            if len(batch) >= batch_size:
                for ids in _encode_batch(tokenizer, batch):
                    writer.add(ids)
                batch = []
        for ids in _encode_batch(tokenizer, batch) if batch else []:
            writer.add(ids)
        index = writer.finish()
    log.info("tokenized %d documents (%d tokens, %d quarantined) into %s",
             index["documents"], index["tokens"], index["quarantined"], out_dir)
    return index


def write_token_sources(
    records: Iterable[dict],
    tokenizer: Any,
    out_dir: str | Path,
    route: Callable[[dict], str],
    *,
    text_key: str = "text",
    shard_tokens: int = 1 << 27,
    add_bos: bool = True,
    eos_token_id: int | None = None,
    batch_size: int = 256,
    checkpoint_every: int = 20_000,
) -> dict[str, int]:
    """Tokenize a stream of records into one source folder per `route(record)` (e.g. the domain) under out_dir,
    in one pass with fixed memory: one open writer per source, each holding at most one batch of texts; shards
    are flushed to disk as they fill. Returns the records per source (quarantined included).

    Resumable: every `checkpoint_every` records the writers' state goes to out_dir/.partial/progress.json; a
    rerun after a crash skips the records already done (the stream must be the same, e.g. sorted shards) and
    continues the shard files from there. Each source folder appears atomically when the stream ends; then
    out_dir/tokenize.json marks the whole job done (a rerun returns at once).
    """
    out_dir = Path(out_dir)
    done = out_dir / "tokenize.json"
    if done.exists():
        return dict(json.loads(done.read_text())["records"])
    eos, bos = _special_ids(tokenizer, add_bos, eos_token_id)
    partial = out_dir / ".partial"
    progress_file = partial / "progress.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {"records": 0, "sources": {}}
    if "finished" in progress:  # crashed while moving the finished sources into place
        return _publish(out_dir, partial, progress["finished"])
    skip = int(progress["records"])
    writers = {name: SourceWriter(partial / name, name, eos, bos, shard_tokens, state)
               for name, state in progress["sources"].items()}
    pending: dict[str, list[str]] = {}

    def encode(name: str) -> None:
        texts = pending.pop(name, [])
        for ids in _encode_batch(tokenizer, texts) if texts else []:
            writers[name].add(ids)

    def checkpoint(n: int) -> None:
        for name in list(pending):
            encode(name)
        state = {"records": n, "sources": {name: w.state() for name, w in writers.items()}}
        atomic_write_json(progress_file, state, indent=None)

    if skip:
        log.info("tokenize: resuming after %d records", skip)
    n = skip
    for n, record in enumerate(itertools.islice(records, skip, None), skip + 1):
        name = str(route(record))
        if not name or name.startswith(".") or "/" in name:
            raise ValueError(f"record {n - 1}: {name!r} is not a usable source folder name")
        if name not in writers:
            writers[name] = SourceWriter(partial / name, name, eos, bos, shard_tokens)
        text = _text_of(record, text_key)
        if text is None:
            encode(name)  # keep record numbers in order
            writers[name].quarantine(record, f"no non-empty string under {text_key!r}")
        else:
            pending.setdefault(name, []).append(text)
            if len(pending[name]) >= batch_size:
                encode(name)
        if n % checkpoint_every == 0:
            checkpoint(n)
    checkpoint(n)
    counts = {}
    for name, writer in sorted(writers.items()):
        index = writer.finish()
        counts[name] = writer.records
        log.info("tokenized %s: %d documents (%d tokens, %d quarantined)", name, index["documents"],
                 index["tokens"], index["quarantined"])
    atomic_write_json(progress_file, {"records": n, "finished": counts}, indent=None)
    return _publish(out_dir, partial, counts)


def _publish(out_dir: Path, partial: Path, counts: dict[str, int]) -> dict[str, int]:
    """Move the finished source folders into place (each atomically), then mark the job done."""
    for name in counts:
        if (partial / name).exists():
            target = out_dir / name
            if target.exists():  # an older, complete source: replace it
                shutil.rmtree(target)
            os.replace(partial / name, target)
    atomic_write_json(out_dir / "tokenize.json", {"records": counts})
    shutil.rmtree(partial, ignore_errors=True)
    return dict(counts)


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
