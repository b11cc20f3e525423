"""SFT batches per the training batch contract, with packing, length bucketing and exact resume.

One optimizer step takes `global_batch_size` conversations (the paper's "batch size 128" counts
samples). Each epoch shuffles the samples with (seed, epoch); step k of the epoch takes the k-th
slice of that order. The step's samples are then
- packed (packing=True): first-fit-decreasing into rows of at most `max_length` positions, each
  sample a document of its own (position_ids restart at 0, document_ids differ, so attention never
  crosses samples), or
- bucketed (packing=False): one sample per row; rows sorted by length so each micro-batch is padded
  only to its own longest sample.
Rows are dealt round-robin to ranks (rank, world_size), then cut into the trainer's fixed number of
micro-batches per step. Padding has labels -100 and a document id of its own (-1). The state is
(step, micro-batch): resuming is exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from infir.sft.data import IGNORE_INDEX, EncodedSample


def pack_first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group item indices into bins of total length <= capacity (first-fit decreasing, deterministic)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        if lengths[i] > capacity:
            raise ValueError(f"item {i} has length {lengths[i]} > capacity {capacity}")
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


def collate_rows(rows: list[list[EncodedSample]], pad_id: int, pad_to_multiple_of: int = 1,
                 length: int | None = None) -> dict[str, torch.Tensor]:
    """Build one micro-batch: each row holds one or more samples back to back, then padding."""
    longest = max(sum(s.num_positions for s in row) for row in rows)
    t = length or max(1, -(-longest // pad_to_multiple_of)) * pad_to_multiple_of
    b = len(rows)
    input_ids = np.full((b, t), pad_id, dtype=np.int64)
    labels = np.full((b, t), IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros((b, t), dtype=np.int64)
    document_ids = np.full((b, t), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for d, sample in enumerate(row):
            x, y = sample.inputs_and_labels()
            n = len(x)
            input_ids[r, at : at + n] = x
            labels[r, at : at + n] = y
            position_ids[r, at : at + n] = np.arange(n)
            document_ids[r, at : at + n] = d
            at += n
        position_ids[r, at:] = np.arange(t - at)  # padding: its own document, positions from 0
    return {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(position_ids), "document_ids": torch.from_numpy(document_ids)}


def split_contiguous(items: list, parts: int) -> list[list]:
    """Cut `items` into `parts` contiguous groups whose sizes differ by at most one (some may be empty)."""
    size, extra = divmod(len(items), parts)
    out, at = [], 0
    for p in range(parts):
        n = size + (1 if p < extra else 0)
        out.append(items[at : at + n])
        at += n
    return out


class SFTBatches:
    """Deterministic, resumable SFT micro-batches for `infir.train.loop.train`.

    Every optimizer step is exactly `accum_steps` micro-batches on every rank (the trainer's contract).
    A step's `global_batch_size` conversations are packed into rows; this rank's rows are cut into
    `accum_steps` contiguous groups of similar length. `accum_steps` is planned once over the whole run
    as the fewest micro-batches of at most `micro_batch_size` rows that every step fits in, so packing
    turns into fewer forward/backward passes per step (not into empty ones). A rank left without rows
    for a micro-batch (a small last step) gets one padding row without labels, keeping ranks in step.
    """

    def __init__(self, samples: Sequence[EncodedSample], *, global_batch_size: int = 128,
                 micro_batch_size: int = 4, max_length: int = 4096, packing: bool = True, pad_id: int = 0,
                 seed: int = 0, total_steps: int | None = None, rank: int = 0, world_size: int = 1,
                 pad_to_multiple_of: int = 8) -> None:
        if not samples:
            raise ValueError("no SFT samples to batch")
        too_long = sum(s.num_positions > max_length for s in samples)
        if too_long:
            raise ValueError(f"{too_long} samples exceed max_length={max_length} (encode with the same limit)")
        self.samples = list(samples)
        self.global_batch_size = global_batch_size
        self.micro_batch_size = micro_batch_size
        self.max_length = max_length
        self.packing = packing
        self.pad_id = pad_id
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.pad_to_multiple_of = pad_to_multiple_of
        self.total_steps = total_steps if total_steps is not None else self.steps_per_epoch
        self.step, self.micro = 0, 0  # next micro-batch to give out
        self._cached_order: tuple[int, np.ndarray] = (-1, np.zeros(0, dtype=np.int64))
        self.accum_steps = self.plan_accum_steps()

    def plan_accum_steps(self) -> int:
        """The most micro-batches (of <= micro_batch_size rows, per rank) any step of the run needs."""
        most = 1
        for step in range(self.total_steps):
            rows_per_rank = -(-len(self.step_rows(step)) // self.world_size)
            most = max(most, -(-rows_per_rank // self.micro_batch_size))
        return most
    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.samples) // self.global_batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached_order[0] != epoch:  # one shuffle per epoch, reused by all its steps
            self._cached_order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.samples)))
        return self._cached_order[1]

    def step_samples(self, step: int) -> list[int]:
        """Indices of the conversations that make up optimizer step `step` (all ranks)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        return self._order(epoch)[k * self.global_batch_size : (k + 1) * self.global_batch_size].tolist()

    def step_rows(self, step: int) -> list[list[int]]:
        """The step's rows (sample indices per row) over all ranks, longest first."""
        chosen = self.step_samples(step)
        lengths = [self.samples[i].num_positions for i in chosen]
        if self.packing:
            bins = pack_first_fit_decreasing(lengths, self.max_length)
            rows = [[chosen[j] for j in sorted(b)] for b in bins]
        else:
            rows = [[i] for i in chosen]
        return sorted(rows, key=lambda row: -sum(self.samples[i].num_positions for i in row))

    def micro_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        """This rank's `accum_steps` micro-batches for optimizer step `step`."""
        rows = self.step_rows(step)[self.rank :: self.world_size]
        out = []
        for group in split_contiguous(rows, self.accum_steps):
            if group:
                out.append(collate_rows([[self.samples[i] for i in row] for row in group], self.pad_id,
                                        self.pad_to_multiple_of))
            else:
                out.append(collate_rows([[]], self.pad_id, length=self.pad_to_multiple_of))
        return out

    def __len__(self) -> int:
        return (self.total_steps - self.step) * self.accum_steps - self.micro

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while self.step < self.total_steps:
            batches = self.micro_batches(self.step)
            for i in range(self.micro, len(batches)):
                # Advance the state before yielding: state_dict() always names the next micro-batch.
                self.step, self.micro = (self.step + 1, 0) if i + 1 == len(batches) else (self.step, i + 1)
                yield batches[i]

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "micro": self.micro, "seed": self.seed, "num_samples": len(self.samples),
                "global_batch_size": self.global_batch_size, "packing": self.packing,
                "accum_steps": self.accum_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("seed", "num_samples", "global_batch_size", "packing", "accum_steps"):
            if key in state and state[key] != mine[key]:
                raise ValueError(f"cannot resume: the data loader's {key} was {state[key]}, now {mine[key]}")
        self.step, self.micro = int(state["step"]), int(state["micro"])
