"""Token-level n-gram decontamination (InfiR §2.1.2: 10-grams) against benchmark test sets.

The texts to match come from the eval tasks themselves (`Task.contamination`: local files laid out like
shared/data, else the Hugging Face hub), so a benchmark added as one task file is decontaminated too.
Tokens are lowercased word tokens (`\\w+`); a document that shares any n-gram with a benchmark is
dropped (or flagged), recording the benchmark and the n-gram.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import regex

from infir.data.minhash import rolling_hashes, word_hashes

_TOKENS = regex.compile(r"\w+")


def load_benchmark_texts(data_dir: Path | None, names: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """{benchmark: [test example text, ...]}, asked of each eval task (local files, else the hub)."""
    from infir.eval.tasks import get_task, task_names

    out = {}
    for name in names:
        try:
            task = get_task(name, "base")
        except KeyError:
            try:
                task = get_task(name, "chat")
            except KeyError:
                raise ValueError(f"unknown benchmark {name!r} (known tasks: {', '.join(task_names())})") from None
        if task.contamination is None:
            raise ValueError(f"task {name!r} declares no texts to decontaminate against")
        out[name] = task.contamination(Path(data_dir) if data_dir else None)
    return out


def tokens(text: str) -> list[str]:
    return _TOKENS.findall(text.lower())


class Decontaminator:
    """Index of benchmark n-grams; `find(text)` returns (benchmark, n-gram) of the first overlap or None."""

    def __init__(self, benchmarks: dict[str, list[str]], n: int = 10):
        self.n = n
        self.names = list(benchmarks)
        hashes, owner = [], []
        for k, texts in enumerate(benchmarks.values()):
            # all texts of a benchmark in one array; keep only windows that lie inside one text
            toks, text_of = [], []
            for j, text in enumerate(texts):
                t = tokens(text)
                toks += t
                text_of += [j] * len(t)
            if len(toks) < n:
                continue
            text_id = np.array(text_of)
            inside = text_id[: len(toks) - n + 1] == text_id[n - 1 :]
            hashes.append(rolling_hashes(word_hashes(toks), n)[inside])
            owner.append(np.full(len(hashes[-1]), k, dtype=np.int16))
        allh = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        self.sorted, first = np.unique(allh, return_index=True)
        self.owner = np.concatenate(owner)[first] if hashes else np.zeros(0, dtype=np.int16)

    def __len__(self) -> int:
        return len(self.sorted)

    def find(self, text: str) -> tuple[str, str] | None:
        toks = tokens(text)
        if len(toks) < self.n or not len(self.sorted):
            return None
        h = rolling_hashes(word_hashes(toks), self.n)
        pos = np.searchsorted(self.sorted, h)
        pos[pos == len(self.sorted)] = 0
        hits = np.flatnonzero(self.sorted[pos] == h)
        if not len(hits):
            return None
        i = int(hits[0])
        return self.names[int(self.owner[pos[i]])], " ".join(toks[i : i + self.n])
