"""What a task is: samples (typed records), a grader for one sample, and an aggregate metric."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


@dataclass
class Task:
    """A task: `load` makes samples; `grade` scores one sample's outputs; `aggregate` makes metrics.

    kind "generate": grade(sample, completions: list[str]) -> row dict with at least "correct".
    kind "loglik": grade(sample, scores: list[(logprob, n_tokens)]) -> row dict with at least "correct".
    """

    name: str
    kind: Literal["generate", "loglik"]
    load: Callable[[Path | None, Mode, int | None], list[Sample]]
    grade: Callable[[Sample, Any], dict[str, Any]]
    aggregate: Callable[[Sequence[dict[str, Any]]], dict[str, float]] | None = None
    description: str = ""
    # Grade samples in worker threads (sandboxed code runs). Math grading stays on the main thread,
    # where Math-Verify's SIGALRM timeouts guard against expressions that would hang sympy.
    grade_in_threads: bool = False


def accuracy(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    return {"accuracy": sum(bool(r["correct"]) for r in rows) / n if n else 0.0, "n": float(n)}


def require_file(path: Path, what: str, hub_hint: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{what}: {path} not found. Pass --data-dir pointing at a folder in the shared/data layout "
            f"(see shared/data/README.md), or get it from the Hugging Face hub: {hub_hint}"
        )
    return path


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
