"""MATH (5,000 test problems) and MATH-500: `\\boxed{}` extraction and equivalence grading.

Base models get 4 worked examples from the train split ("Problem:/Solution:"); chat models the
Qwen2.5-Math zero-shot instruction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infir.eval.grading import extract_answer, math_equal
from infir.eval.tasks.base import Mode, Sample, Task, accuracy, limit_rows, load_hub_rows, require_file
from infir.utils.io import read_jsonl

NUM_SHOTS = 4
CHAT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
BASE_STOPS = ["\n\nProblem:", "Problem:"]


def _math_rows(data_dir: Path | None, split: str) -> list[dict[str, Any]]:
    if data_dir is None:
        return load_hub_rows("EleutherAI/hendrycks_math", None, split)
    return list(
        read_jsonl(require_file(data_dir / "math" / f"{split}.jsonl.gz", "MATH", "EleutherAI/hendrycks_math"))
    )


def _math500_rows(data_dir: Path | None) -> list[dict[str, Any]]:
    if data_dir is None:
        return load_hub_rows("HuggingFaceH4/MATH-500", None, "test")
    return list(
        read_jsonl(
            require_file(data_dir / "math" / "math500_test.jsonl", "MATH-500", "HuggingFaceH4/MATH-500")
        )
    )


def base_prompt(problem: str, shots: list[dict[str, Any]]) -> str:
    parts = [f"Problem:\n{s['problem']}\n\nSolution:\n{s['solution']}\n\n" for s in shots]
    return "".join(parts) + f"Problem:\n{problem}\n\nSolution:\n"


def chat_messages(problem: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{problem}\n\n{CHAT_INSTRUCTION}"}]


def make_samples(rows: list[dict[str, Any]], name: str, data_dir: Path | None, mode: Mode) -> list[Sample]:
    shots = _math_rows(data_dir, "train")[:NUM_SHOTS] if mode == "base" else []
    samples = []
    for i, row in enumerate(rows):
        answer = row.get("answer") or extract_answer(row["solution"])
        prompt: Any = base_prompt(row["problem"], shots) if mode == "base" else chat_messages(row["problem"])
        samples.append(
            Sample(
                id=row.get("unique_id") or f"{name}/{i}",
                prompt=prompt,
                reference=answer,
                stop=BASE_STOPS if mode == "base" else [],
                meta={"level": row.get("level"), "subject": row.get("subject", row.get("type"))},
            )
        )
    return samples


def load_math(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    return make_samples(limit_rows(_math_rows(data_dir, "test"), limit), "math", data_dir, mode)


def load_math500(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    return make_samples(limit_rows(_math500_rows(data_dir), limit), "math500", data_dir, mode)


def grade(sample: Sample, completions: list[str]) -> dict[str, Any]:
    extracted = extract_answer(completions[0])
    return {"extracted": extracted, "correct": math_equal(extracted, sample.reference)}


MATH = Task("math", "generate", load_math, grade, accuracy, "MATH test (5,000)")
MATH500 = Task("math500", "generate", load_math500, grade, accuracy, "MATH-500 (PRM800K test split)")
