"""MBPP with its test cases in the prompt (Austin et al.): test = tasks 11-510, few-shot = tasks 2-4.

Base models: 3-shot "[BEGIN] ... [DONE]" prompts; chat models: zero-shot, code taken from the reply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infir.eval.tasks.base import Mode, Sample, Source, Task, limit_rows, load_hub_rows
from infir.eval.tasks.code import code_metrics, extract_code, grade_programs

TEST_IDS = range(11, 511)
SHOT_IDS = (2, 3, 4)
BASE_STOPS = ["[DONE]"]


SOURCE = Source("MBPP", files={"all": ("mbpp/mbpp.jsonl",)}, hub="google-research-datasets/mbpp", config="full")


def _rows(data_dir: Path | None) -> dict[int, dict[str, Any]]:
    """Every MBPP task by id (the local file holds all 974; the hub splits them four ways)."""
    if data_dir is None:
        rows = []
        for split in ("train", "test", "validation", "prompt"):
            rows += load_hub_rows(SOURCE.hub or "", SOURCE.config, split)
    else:
        rows = SOURCE.rows(data_dir, "all")
    return {int(r["task_id"]): r for r in rows}


def describe(row: dict[str, Any]) -> str:
    tests = "\n".join(row["test_list"])
    return (
        f"You are an expert Python programmer, and here is your task: {row['text']} "
        f"Your code should pass these tests:\n\n{tests}\n"
    )


def base_prompt(row: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    parts = [f"{describe(s)}[BEGIN]\n{s['code']}\n[DONE]\n" for s in shots]
    return "".join(parts) + f"{describe(row)}[BEGIN]\n"


def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    rows = _rows(data_dir)
    shots = [rows[i] for i in SHOT_IDS]
    samples = []
    for task_id in limit_rows([i for i in TEST_IDS if i in rows], limit):
        row = rows[task_id]
        if mode == "base":
            prompt: Any = base_prompt(row, shots)
        else:
            prompt = [
                {
                    "role": "user",
                    "content": describe(row) + "\nReply with the code in a ```python code block.",
                }
            ]
        samples.append(
            Sample(
                id=f"mbpp/{task_id}",
                prompt=prompt,
                reference="\n".join(row["test_list"]),
                stop=BASE_STOPS if mode == "base" else [],
                meta={"mode": mode, "setup": row.get("test_setup_code") or ""},
            )
        )
    return samples


def program(sample: Sample, completion: str) -> str:
    code = extract_code(completion) if sample.meta.get("mode") == "chat" else completion
    return f"{sample.meta.get('setup', '')}\n{code}\n\n{sample.reference}\n"


def grade(sample: Sample, completions: list[str]) -> dict[str, Any]:
    return grade_programs([program(sample, c) for c in completions])


def contamination(data_dir: Path | None) -> list[str]:
    """The test tasks (11-510): statement, reference code and tests."""
    rows = _rows(data_dir)
    return [rows[i]["text"] + "\n" + rows[i]["code"] + "\n" + "\n".join(rows[i]["test_list"])
            for i in TEST_IDS if i in rows]


TASK = Task(
    "mbpp",
    "generate",
    load,
    grade,
    code_metrics,
    "MBPP test (tasks 11-510), 3-shot base / 0-shot chat",
    source=SOURCE,
    contamination=contamination,
    grade_in_threads=True,
)
