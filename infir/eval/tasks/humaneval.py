"""HumanEval: complete the function; greedy pass@1 (or unbiased pass@k when sampling), run in the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infir.eval.tasks.base import Mode, Sample, Source, Task, limit_rows
from infir.eval.tasks.code import code_metrics, extract_code, grade_programs

# Codex paper stop sequences: a new top-level statement ends the function body.
BASE_STOPS = ["\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint(", "\nassert "]
CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the full function in a ```python code block."
)


SOURCE = Source(
    "HumanEval", files={"test": ("humaneval/HumanEval.jsonl.gz", "humaneval/HumanEval.jsonl")},
    hub="openai/openai_humaneval",
)


def _rows(data_dir: Path | None) -> list[dict[str, Any]]:
    return SOURCE.rows(data_dir, "test")


def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    samples = []
    for row in limit_rows(_rows(data_dir), limit):
        if mode == "base":
            prompt: Any = row["prompt"]
        else:
            prompt = [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n```python\n{row['prompt']}```"}]
        samples.append(
            Sample(
                id=row["task_id"],
                prompt=prompt,
                reference=row["test"],
                stop=BASE_STOPS if mode == "base" else [],
                meta={"entry_point": row["entry_point"], "code_prompt": row["prompt"], "mode": mode},
            )
        )
    return samples


def program(sample: Sample, completion: str) -> str:
    """The program the sandbox runs: solution + the task's tests + check(entry_point)."""
    prompt, entry = sample.meta["code_prompt"], sample.meta["entry_point"]
    if sample.meta.get("mode") == "chat":
        code = extract_code(completion)
        # A full function replaces the prompt; keep the prompt's imports and helpers above it.
        solution = f"{prompt}\n    pass\n\n{code}" if f"def {entry}" in code else prompt + code
    else:
        solution = prompt + completion
    return f"{solution}\n\n{sample.reference}\n\ncheck({entry})\n"


def grade(sample: Sample, completions: list[str]) -> dict[str, Any]:
    return grade_programs([program(sample, c) for c in completions])


def contamination(data_dir: Path | None) -> list[str]:
    return [r["prompt"] + r["canonical_solution"] for r in _rows(data_dir)]


TASK = Task(
    "humaneval",
    "generate",
    load,
    grade,
    code_metrics,
    "HumanEval (164), pass@k in the sandbox",
    source=SOURCE,
    contamination=contamination,
    grade_in_threads=True,
)
