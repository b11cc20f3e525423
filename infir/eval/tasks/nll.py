"""Held-out text NLL per token (paper §2.3.1, eq. 1): lower is better.

Texts come from, in order: DATA_DIR/nll/*.jsonl ({"text"}) or *.txt (one text per line),
DATA_DIR/corpus/wikitext-2/test.txt (paragraphs), else GSM8K test question + solution texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infir.eval.tasks import gsm8k
from infir.eval.tasks.base import Mode, Sample, Task, limit_rows
from infir.utils.io import read_jsonl


def _texts(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        raise FileNotFoundError(
            "nll: needs --data-dir with nll/*.jsonl|txt, corpus/wikitext-2/test.txt or gsm8k/test.jsonl"
        )
    folder = data_dir / "nll"
    if folder.is_dir():
        texts: list[str] = []
        for path in sorted(folder.iterdir()):
            if path.suffix == ".jsonl":
                texts += [r["text"] for r in read_jsonl(path)]
            elif path.suffix == ".txt":
                texts += [
                    line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
                ]
        if texts:
            return texts
    wiki = data_dir / "corpus" / "wikitext-2" / "test.txt"
    if wiki.exists():
        lines = [line.strip() for line in wiki.read_text(encoding="utf-8").splitlines()]
        return [line for line in lines if len(line) > 200 and not line.startswith("=")]
    if gsm8k.SOURCE.path(data_dir, "test") is not None:
        return [prompt + answer for prompt, answer in gsm8k.nll_items(data_dir, 10**9).answers]
    raise FileNotFoundError(
        f"nll: no held-out text under {data_dir} (nll/, corpus/wikitext-2/test.txt, gsm8k/test.jsonl)"
    )


def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    return [
        Sample(id=f"nll/{i}", prompt="", reference=None, choices=[t])
        for i, t in enumerate(limit_rows(_texts(data_dir), limit))
    ]


def grade(sample: Sample, scores: list[tuple[float, int]]) -> dict[str, Any]:
    logp, n = scores[0]
    return {"nll": -logp, "tokens": n, "correct": None}


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    tokens = sum(r["tokens"] for r in rows)
    nll = sum(r["nll"] for r in rows) / max(1, tokens)
    return {
        "nll_per_token": nll,
        "perplexity": math.exp(min(nll, 50.0)),
        "tokens": float(tokens),
        "n": float(len(rows)),
    }


TASK = Task("nll", "loglik", load, grade, aggregate, "held-out text NLL per token")
