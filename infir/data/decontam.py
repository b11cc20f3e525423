"""Token-level n-gram decontamination (InfiR §2.1.2: 10-grams) against benchmark test sets.

Benchmark texts come from local files laid out like shared/data (gsm8k/, math/, humaneval/, mbpp/,
mmlu/) or, where a benchmark is missing there, from the Hugging Face hub through `datasets`.
Tokens are lowercased word tokens (`\\w+`); a document that shares any n-gram with a benchmark is
dropped (or flagged), recording the benchmark and the n-gram.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import regex

from infir.data.minhash import rolling_hashes, word_hashes

BENCHMARKS = ("gsm8k", "math", "humaneval", "mbpp", "mmlu")
_TOKENS = regex.compile(r"\w+")
# Where each benchmark lives on the Hugging Face hub (dataset, config, split, text fields).
HF_SOURCES = {
    "gsm8k": ("openai/gsm8k", "main", "test", ("question", "answer")),
    "math": ("HuggingFaceH4/MATH-500", None, "test", ("problem", "solution")),
    "humaneval": ("openai/openai_humaneval", None, "test", ("prompt", "canonical_solution")),
    "mbpp": ("google-research-datasets/mbpp", "full", "test", ("text", "code")),
    "mmlu": ("cais/mmlu", "all", "test", ("question",)),
}


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _local_texts(data_dir: Path, name: str) -> list[str] | None:
    d = data_dir / name
    if name == "gsm8k" and (d / "test.jsonl").exists():
        return [r["question"] + "\n" + r["answer"] for r in _jsonl(d / "test.jsonl")]
    if name == "math":
        for f in ("test.jsonl.gz", "test.jsonl", "math500_test.jsonl"):
            if (d / f).exists():
                return [r["problem"] + "\n" + r.get("solution", "") for r in _jsonl(d / f)]
    if name == "humaneval":
        for f in ("HumanEval.jsonl.gz", "HumanEval.jsonl"):
            if (d / f).exists():
                return [r["prompt"] + r["canonical_solution"] for r in _jsonl(d / f)]
    if name == "mbpp" and (d / "mbpp.jsonl").exists():
        rows = _jsonl(d / "mbpp.jsonl")
        # google's split: tasks 11-510 are the test set
        return [
            r["text"] + "\n" + r["code"] + "\n" + "\n".join(r["test_list"])
            for r in rows
            if 11 <= r["task_id"] <= 510
        ]
    if name == "mmlu" and (d / "test").is_dir():
        texts = []
        for f in sorted((d / "test").glob("*_test.csv")):
            with open(f, encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    texts.append(" ".join([row["question"]] + [row[f"choice{i}"] for i in range(4)]))
        return texts
    return None


def _hub_texts(name: str) -> list[str]:
    try:
        import datasets
    except ImportError as e:
        raise RuntimeError(
            f"benchmark '{name}' is not in the local data folder and the `datasets` package is not installed "
            f"to fetch {HF_SOURCES[name][0]} from the Hugging Face hub; pass a folder laid out like shared/data"
        ) from e
    repo, config, split, fields = HF_SOURCES[name]
    ds = datasets.load_dataset(repo, config, split=split)
    return ["\n".join(str(row[f]) for f in fields) for row in ds]


def load_benchmark_texts(
    data_dir: Path | None, names: list[str] | tuple[str, ...] = BENCHMARKS
) -> dict[str, list[str]]:
    """{benchmark: [test example text, ...]} from local files, else from the HF hub."""
    out = {}
    for name in names:
        if name not in HF_SOURCES:
            raise ValueError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
        texts = _local_texts(Path(data_dir), name) if data_dir else None
        out[name] = texts if texts is not None else _hub_texts(name)
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
