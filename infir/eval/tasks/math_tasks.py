"""MATH (5,000 test problems) and MATH-500: `\\boxed{}` extraction and equivalence grading.

Base models get 4 worked examples from the train split ("Problem:/Solution:"); chat models the
Qwen2.5-Math zero-shot instruction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infir.eval.grading import extract_answer, math_equal
from infir.eval.tasks.base import Mode, NllItems, Sample, Source, Task, accuracy, limit_rows

NUM_SHOTS = 4
CHAT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
BASE_STOPS = ["\n\nProblem:", "Problem:"]


MATH_SOURCE = Source(
    "MATH",
    files={"test": ("math/test.jsonl.gz", "math/test.jsonl"), "train": ("math/train.jsonl.gz", "math/train.jsonl")},
    hub="EleutherAI/hendrycks_math",
)
MATH500_SOURCE = Source("MATH-500", files={"test": ("math/math500_test.jsonl",)}, hub="HuggingFaceH4/MATH-500")


def _math_rows(data_dir: Path | None, split: str) -> list[dict[str, Any]]:
    return MATH_SOURCE.rows(data_dir, split)


def _math500_rows(data_dir: Path | None) -> list[dict[str, Any]]:
    return MATH500_SOURCE.rows(data_dir, "test")


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


def _texts(rows: list[dict[str, Any]]) -> list[str]:
    return [r["problem"] + "\n" + r.get("solution", "") for r in rows]


def contamination_math(data_dir: Path | None) -> list[str]:
    """The full MATH test set (MATH-500 is a subset of it)."""
    return _texts(_math_rows(data_dir, "test"))


def contamination_math500(data_dir: Path | None) -> list[str]:
    return _texts(_math500_rows(data_dir))


def _nll(rows: list[dict[str, Any]]) -> NllItems:
    return NllItems(answers=[(f"Problem: {r['problem']}\nSolution:", f" {r['solution']}") for r in rows])


def nll_math(data_dir: Path | None, limit: int) -> NllItems:
    return _nll(_math_rows(data_dir, "test")[:limit])


def nll_math500(data_dir: Path | None, limit: int) -> NllItems:
    return _nll(_math500_rows(data_dir)[:limit])


def to_chat(row: dict[str, Any]) -> list[dict[str, str]]:
    return [*chat_messages(row["problem"]), {"role": "assistant", "content": row["solution"]}]


MATH = Task("math", "generate", load_math, grade, accuracy, "MATH test (5,000)", source=MATH_SOURCE,
            contamination=contamination_math, nll_items=nll_math, to_chat=to_chat)
MATH500 = Task("math500", "generate", load_math500, grade, accuracy, "MATH-500 (PRM800K test split)",
               source=MATH500_SOURCE, contamination=contamination_math500, nll_items=nll_math500, to_chat=to_chat)
TASKS = [MATH, MATH500]
