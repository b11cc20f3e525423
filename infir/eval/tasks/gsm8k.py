"""GSM8K: base models 8-shot "Question:/Answer:" with `####` extraction; chat models zero-shot CoT.

The one place that knows GSM8K's files and fields: `question`, and `answer` = worked solution with
`<<calculator>>` annotations ending in `#### N`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infir.eval.grading import extract_answer, math_equal
from infir.eval.tasks.base import Mode, NllItems, Sample, Source, Task, accuracy, limit_rows

NUM_SHOTS = 8
CHAT_INSTRUCTION = "Solve the following math problem step by step. Put your final answer within \\boxed{}."
BASE_STOPS = ["Question:", "\n\n"]
SOURCE = Source(
    "GSM8K",
    files={"test": ("gsm8k/test.jsonl",), "train": ("gsm8k/train.jsonl",)},
    hub="openai/gsm8k",
    config="main",
)


def reference_answer(solution: str) -> str:
    """The number after `####` in a GSM8K solution, commas removed."""
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def has_reference(solution: str) -> bool:
    return "####" in solution


def clean_solution(solution: str) -> str:
    """A GSM8K solution without the <<48/2=24>> calculator annotations."""
    return re.sub(r"<<[^>]*>>", "", solution)


def base_prompt(question: str, shots: Sequence[dict[str, Any]]) -> str:
    parts = [f"Question: {s['question']}\nAnswer: {clean_solution(s['answer'])}\n\n" for s in shots]
    return "".join(parts) + f"Question: {question}\nAnswer:"


def chat_prompt(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n{question}"}]


def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    test = limit_rows(SOURCE.rows(data_dir, "test"), limit)
    shots = SOURCE.rows(data_dir, "train")[:NUM_SHOTS] if mode == "base" else []
    samples = []
    for i, row in enumerate(test):
        if mode == "base":
            prompt: Any = base_prompt(row["question"], shots)
            stop = BASE_STOPS
        else:
            prompt, stop = chat_prompt(row["question"]), []
        samples.append(
            Sample(id=f"gsm8k/test/{i}", prompt=prompt, reference=reference_answer(row["answer"]), stop=stop)
        )
    return samples


def grade(sample: Sample, completions: list[str]) -> dict[str, Any]:
    extracted = extract_answer(completions[0])
    return {"extracted": extracted, "correct": math_equal(extracted, sample.reference)}


def contamination(data_dir: Path | None) -> list[str]:
    return [r["question"] + "\n" + r["answer"] for r in SOURCE.rows(data_dir, "test")]


def nll_items(data_dir: Path | None, limit: int) -> NllItems:
    rows = SOURCE.rows(data_dir, "test")[:limit]
    return NllItems(answers=[(f"Question: {r['question']}\nAnswer:", f" {r['answer']}") for r in rows])


def to_chat(row: dict[str, Any]) -> list[dict[str, str]]:
    """A train row as a chat in the zero-shot prompt; the reply keeps its `#### N` line and states the
    answer in the \\boxed{} form the instruction asks for."""
    final = reference_answer(row["answer"])
    reply = f"{clean_solution(row['answer'])}\nThe answer is \\boxed{{{final}}}."
    return [*chat_prompt(row["question"]), {"role": "assistant", "content": reply}]


TASK = Task(
    "gsm8k", "generate", load, grade, accuracy, "GSM8K test (1,319), 8-shot base / 0-shot chat",
    source=SOURCE, contamination=contamination, nll_items=nll_items, to_chat=to_chat,
)
