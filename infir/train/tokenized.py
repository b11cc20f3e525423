"""The packed, weighted, resumable loader that reads tokenized sources (`infir.data.tokens`).

The loader treats each source as one endless token stream (it wraps around: a new epoch) and cuts
fixed windows of seq_len + 1 tokens from it. Rows are assigned to sources by a deterministic
weighted round robin (the source furthest below its share goes next), so the mixture is exact at
every step and the loader's whole state is a few integers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infir.data.tokens import TokenStream
from infir.train.loss import IGNORE_INDEX


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
                 micro_batch_size: int, rank: int = 0, world_size: int = 1) -> None:
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
                rows.append(pack_row(stream.read(n * self.seq_len, self.seq_len + 1), stream.eos_token_id))
        self.micro_batches += 1
        return {k: torch.from_numpy(np.stack([r[k] for r in rows])).long() for k in rows[0]}

    def state_dict(self) -> dict[str, Any]:
        return {"next_row": self.next_row, "rows_per_source": list(self.rows_per_source),
                "micro_batches": self.micro_batches, "sources": [str(s.path) for s in self.streams]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["rows_per_source"]) != len(self.streams):
            raise ValueError("checkpointed loader state has a different number of sources")
        self.next_row = int(state["next_row"])
        self.rows_per_source = [int(x) for x in state["rows_per_source"]]
        self.micro_batches = int(state["micro_batches"])

    def epochs(self) -> list[float]:
        """How many passes over each source have been read so far."""
        return [n * self.seq_len / s.num_tokens for n, s in zip(self.rows_per_source, self.streams, strict=True)]
