"""The packed, weighted, resumable loader that reads tokenized sources (`infir.data.tokens`).

The loader treats each source as one endless token stream (it wraps around: a new epoch) and cuts
fixed windows of seq_len + 1 tokens from it. Rows are assigned to sources by a deterministic
weighted round robin (the source furthest below its share goes next), so the mixture is exact at
every step and the loader's whole state is a few integers.

Shuffled (the default for pretraining, as Megatron-style and nanoGPT-style loaders do): a source's n-th row
is not its n-th window but window perm(n) of the epoch, where perm is a seeded pseudo-random bijection over all
the windows of all its shards (`WindowPermutation`: a Feistel network, no table in memory), new every epoch,
and each epoch cuts its windows at a seeded offset so different epochs see different cuts. Which window a row
reads is a pure function of (seed, source, row number), so resuming from the state is exact and ranks split
rows exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infir.data.tokens import TokenStream
from infir.train.loss import IGNORE_INDEX

_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a bijective 64-bit mix (the Feistel round function)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class WindowPermutation:
    """A seeded pseudo-random bijection of [0, n) that needs no table: a 4-round balanced Feistel network on
    the smallest even number of bits that covers n, cycle-walking the values that land outside [0, n)
    (fewer than 4 steps on average, since the network's domain is under 4n)."""

    def __init__(self, n: int, key: int) -> None:
        if n < 1:
            raise ValueError(f"a permutation needs n >= 1, got {n}")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = (1 << self.half) - 1
        self.round_keys = [_mix64((key & _M64) ^ _mix64(r + 1)) for r in range(4)]

    def _encrypt(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for k in self.round_keys:
            left, right = right, left ^ (_mix64(right ^ k) & self.mask)
        return (left << self.half) | right

    def __call__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"{i} is outside [0, {self.n})")
        x = self._encrypt(i)
        while x >= self.n:
            x = self._encrypt(x)
        return x


def pack_row(tokens: np.ndarray, eos_token_id: int) -> dict[str, np.ndarray]:
    """Turn seq_len + 1 stream tokens into one training row of the batch contract.

    A document ends at its EOS; the next token starts a new document (positions restart at 0, and
    attention never crosses). The label at an EOS (the next document's first token) is ignored.
    """
    inputs, labels = tokens[:-1], tokens[1:].copy()
    t = len(inputs)
    is_eos = inputs == eos_token_id
    labels[is_eos] = IGNORE_INDEX
    new_doc = np.zeros(t, dtype=bool)
    new_doc[0] = True
    new_doc[1:] = is_eos[:-1]
    document_ids = np.cumsum(new_doc) - 1
    starts = np.maximum.accumulate(np.where(new_doc, np.arange(t), 0))
    return {"input_ids": inputs, "labels": labels, "position_ids": np.arange(t) - starts,
            "document_ids": document_ids}


class PackedLoader:
    """Endless micro-batches [micro_batch_size, seq_len] for one data-parallel rank.

    Global row k belongs to micro-batch k // B; rank r takes global micro-batches r, r + W, r + 2W, ...
    so W ranks with A accumulation steps see exactly the rows one process with A * W steps sees.
    """

    def __init__(self, sources: list[str | Path], weights: list[float] | None, seq_len: int,
                 micro_batch_size: int, rank: int = 0, world_size: int = 1, *, shuffle: bool = True,
                 seed: int = 0) -> None:
        self.streams = [TokenStream(p) for p in sources]
        raw = weights if weights is not None else [s.num_tokens for s in self.streams]
        if len(raw) != len(self.streams) or min(raw) < 0 or sum(raw) <= 0:
            raise ValueError(f"need one non-negative weight per source, got {raw}")
        self.weights = np.asarray(raw, dtype=np.float64) / sum(raw)
        self.seq_len, self.micro_batch_size = seq_len, micro_batch_size
        self.rank, self.world_size = rank, world_size
        self.next_row = 0  # global rows assigned so far
        self.rows_per_source = [0] * len(self.streams)
        self.micro_batches = 0  # micro-batches this rank has produced
        self.shuffle, self.seed = shuffle, seed
        self.windows = [max(1, s.num_tokens // seq_len) for s in self.streams]  # per epoch, when shuffled
        self._perm: dict[int, tuple[int, WindowPermutation, int]] = {}  # source -> (epoch, perm, offset)

    def window_start(self, source: int, n: int) -> int:
        """Stream position of source's n-th row."""
        if not self.shuffle:
            return n * self.seq_len
        epoch, k = divmod(n, self.windows[source])
        cached = self._perm.get(source)
        if cached is None or cached[0] != epoch:
            key = _mix64(_mix64(_mix64(self.seed) ^ source) ^ epoch)
            cached = (epoch, WindowPermutation(self.windows[source], key), _mix64(key) % self.seq_len)
            self._perm[source] = cached
        _, perm, offset = cached
        return offset + perm(k) * self.seq_len

    def _assign(self) -> tuple[int, int]:
        """Source and its row number for the next global row (weighted round robin)."""
        deficit = self.weights * (self.next_row + 1) - np.asarray(self.rows_per_source)
        source = int(np.argmax(deficit))
        n = self.rows_per_source[source]
        self.rows_per_source[source] += 1
        self.next_row += 1
        return source, n

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        b, w = self.micro_batch_size, self.world_size
        rows = []
        for slot in range(w * b):  # the whole group of W micro-batches; keep this rank's rows
            source, n = self._assign()
            if slot // b == self.rank:
                stream = self.streams[source]
                start = self.window_start(source, n)
                rows.append(pack_row(stream.read(start, self.seq_len + 1), stream.eos_token_id))
        self.micro_batches += 1
        return {k: torch.from_numpy(np.stack([r[k] for r in rows])).long() for k in rows[0]}

    def state_dict(self) -> dict[str, Any]:
        return {"next_row": self.next_row, "rows_per_source": list(self.rows_per_source),
                "micro_batches": self.micro_batches, "sources": [str(s.path) for s in self.streams],
                "shuffle": self.shuffle, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["rows_per_source"]) != len(self.streams):
            raise ValueError("checkpointed loader state has a different number of sources")
        saved = (bool(state.get("shuffle", False)), int(state.get("seed", 0)) if state.get("shuffle") else None)
        mine = (self.shuffle, self.seed if self.shuffle else None)
        if saved != mine:  # the same row numbers would read other windows: not a resume
            raise ValueError(f"checkpointed loader order (shuffle, seed) = {saved} differs from this loader's "
                             f"{mine}; set the data shuffle/seed the run started with")
        self.next_row = int(state["next_row"])
        self.rows_per_source = [int(x) for x in state["rows_per_source"]]
        self.micro_batches = int(state["micro_batches"])

    def epochs(self) -> list[float]:
        """How many passes over each source have been read so far."""
        return [n * self.seq_len / s.num_tokens for n, s in zip(self.rows_per_source, self.streams, strict=True)]
