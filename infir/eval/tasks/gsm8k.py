"""GSM8K: base models 8-shot "Question:/Answer:" with `####` extraction; chat models zero-shot CoT."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infir.eval.grading import extract_answer, math_equal
from infir.eval.tasks.base import Mode, Sample, Task, accuracy, limit_rows, load_hub_rows, require_file
from infir.utils.io import read_jsonl

NUM_SHOTS = 8
CHAT_INSTRUCTION = "Solve the following math problem step by step. Put your final answer within \\boxed{}."
BASE_STOPS = ["Question:", "\n\n"]


def _rows(data_dir: Path | None, split: str) -> list[dict[str, Any]]:
    if data_dir is None:
        return load_hub_rows("openai/gsm8k", "main", split)
    return list(
        read_jsonl(require_file(data_dir / "gsm8k" / f"{split}.jsonl", "GSM8K", "openai/gsm8k (main)"))
    )


def reference_answer(solution: str) -> str:
    """The number after `####` in a GSM8K solution, commas removed."""
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def clean_solution(solution: str) -> str:
    """A GSM8K solution without the <<48/2=24>> calculator annotations."""
    return re.sub(r"<<[^>]*>>", "", solution)


def base_prompt(question: str, shots: Sequence[dict[str, Any]]) -> str:
    parts = [f"Question: {s['question']}\nAnswer: {clean_solution(s['answer'])}\n\n" for s in shots]
    return "".join(parts) + f"Question: {question}\nAnswer:"


def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    test = limit_rows(_rows(data_dir, "test"), limit)
    shots = _rows(data_dir, "train")[:NUM_SHOTS] if mode == "base" else []
    samples = []
    for i, row in enumerate(test):
        if mode == "base":
            prompt: Any = base_prompt(row["question"], shots)
            stop = BASE_STOPS
        else:
            prompt = [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n{row['question']}"}]
            stop = []
        samples.append(
            Sample(id=f"gsm8k/test/{i}", prompt=prompt, reference=reference_answer(row["answer"]), stop=stop)
        )
    return samples


def grade(sample: Sample, completions: list[str]) -> dict[str, Any]:
    extracted = extract_answer(completions[0])
    return {"extracted": extracted, "correct": math_equal(extracted, sample.reference)}


TASK = Task("gsm8k", "generate", load, grade, accuracy, "GSM8K test (1,319), 8-shot base / 0-shot chat")
