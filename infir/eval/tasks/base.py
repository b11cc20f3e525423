"""What a task is: one benchmark, declared in one file.

A task module (in this package, in a folder named by `INFIR_TASKS_PATH` / `--tasks-dir`, or behind an
`infir.tasks` entry point) defines `TASK = Task(...)` (or `TASKS = [...]`). A `Task` declares:

- `source`: its files in the shared/data layout (tried in order) and its Hugging Face hub id;
- `load(data_dir, mode, limit)`: the samples with their prompts, few-shot for base models (`mode="base"`,
  the paper's Table 1 protocol) and zero-shot for chat models (`mode="chat"`, Table 2);
- `grade` (one sample's outputs -> a row with at least "correct") and `aggregate` (rows -> metrics);
- `contamination(data_dir)`: the texts 10-gram decontamination must match (§2.1.2);
- optionally `nll_items(data_dir, limit)`: what the offline NLL evals of §2.3 score, and `to_chat(row)`:
  a training row as a chat in the task's own zero-shot prompt (SFT-data helpers).

Every other room asks the task (decontamination, the offline and anneal-time evals, SFT data) instead
of keeping its own copy of the benchmark's files, fields or prompts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from infir.utils.io import read_jsonl

Mode = Literal["base", "chat"]


@dataclass
class Sample:
    """One evaluation item.

    prompt: text for base models, or chat messages ([{"role", "content"}]) for chat mode.
    choices: the continuations scored by log-likelihood (log-likelihood tasks only).
    reference: what grading compares against (an answer string, a choice index, test code...).
    """

    id: str
    prompt: str | list[dict[str, str]]
    reference: Any
    choices: list[str] | None = None
    stop: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """Where a benchmark's rows live: files under a data dir (shared/data layout, first found wins)
    or, without a data dir, the Hugging Face hub (`hub` dataset id, `config`, the split named by the caller).

    `files` maps a split name to candidate paths relative to the data dir.
    """

    name: str
    files: dict[str, tuple[str, ...]]
    hub: str | None = None
    config: str | None = None
    hub_splits: dict[str, str] = field(default_factory=dict)  # our split name -> the hub's, when they differ

    def path(self, data_dir: Path, split: str = "test") -> Path | None:
        """The first candidate file of `split` that exists under `data_dir`, or None."""
        for rel in self.files.get(split, ()):
            if (data_dir / rel).exists():
                return data_dir / rel
        return None

    def rows(self, data_dir: Path | None, split: str = "test") -> list[dict[str, Any]]:
        """The split's rows: from the local files when a data dir is given, else from the hub."""
        if data_dir is None:
            if self.hub is None:
                raise FileNotFoundError(f"{self.name}: no hub dataset is known; pass --data-dir")
            return load_hub_rows(self.hub, self.config, self.hub_splits.get(split, split))
        path = self.path(Path(data_dir), split)
        if path is None:
            wanted = " or ".join(str(Path(data_dir) / rel) for rel in self.files.get(split, ())) or "(none)"
            hint = f"get it from the Hugging Face hub: {self.hub}" if self.hub else "see the task's docstring"
            raise FileNotFoundError(
                f"{self.name} ({split}): {wanted} not found. Pass --data-dir pointing at a folder in the "
                f"shared/data layout (see shared/data/README.md), or {hint}"
            )
        return read_rows(path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL(.gz) or JSON-list file."""
    if path.suffix == ".json":
        import json

        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data) if isinstance(data, list) else [data]
    return list(read_jsonl(path))


# What the offline NLL evals (§2.3) score: (prompt, answer) pairs, or (prompt, options, right index).
AnswerItem = tuple[str, str]
ChoiceItem = tuple[str, list[str], int]


@dataclass
class NllItems:
    answers: list[AnswerItem] = field(default_factory=list)
    choices: list[ChoiceItem] = field(default_factory=list)


@dataclass
class Task:
    """A benchmark (see the module docstring). `kind` says what the model produces:

    "generate": grade(sample, completions: list[str]) -> row dict with at least "correct";
    "loglik": grade(sample, scores: list[(logprob, n_tokens)]) -> row dict with at least "correct".
    """

    name: str
    kind: Literal["generate", "loglik"]
    load: Callable[[Path | None, Mode, int | None], list[Sample]]
    grade: Callable[[Sample, Any], dict[str, Any]]
    aggregate: Callable[[Sequence[dict[str, Any]]], dict[str, float]] | None = None
    description: str = ""
    source: Source | None = None
    contamination: Callable[[Path | None], list[str]] | None = None
    nll_items: Callable[[Path | None, int], NllItems] | None = None
    to_chat: Callable[[dict[str, Any]], list[dict[str, str]]] | None = None
    modes: tuple[Mode, ...] = ("base", "chat")
    # Grade samples in worker threads (sandboxed code runs spend their time waiting on subprocesses).
    grade_in_threads: bool = False


def accuracy(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    return {"accuracy": sum(bool(r["correct"]) for r in rows) / n if n else 0.0, "n": float(n)}


def default_data_dir() -> Path | None:
    """$INFIR_SHARED_DATA when set (the layout of shared/data), else None (use the hub)."""
    env = os.environ.get("INFIR_SHARED_DATA")
    return Path(env) if env else None


def load_hub_rows(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Rows of a Hugging Face hub dataset via the `datasets` package (a clear error when it is missing)."""
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError as e:
        raise RuntimeError(
            f"no --data-dir given and the `datasets` package is not installed, so {dataset} cannot be "
            "fetched from the Hugging Face hub: pass --data-dir DIR (shared/data layout) "
            "or `pip install datasets`"
        ) from e
    return [dict(r) for r in datasets.load_dataset(dataset, config, split=split)]


def limit_rows(rows: list[Any], limit: int | None) -> list[Any]:
    return rows if limit is None else rows[:limit]
