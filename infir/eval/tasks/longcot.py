"""Long chain-of-thought sets (paper Table 6): AIME24, AMC23, OlympiadBench, GPQA (MATH-500: math_tasks).

Read from local JSONL, `DATA_DIR/longcot/<name>.jsonl` or `DATA_DIR/<name>/test.jsonl`, with the
field names their public releases use: problem/question/Question and answer/final_answer (math sets);
GPQA's "Question", "Correct Answer", "Incorrect Answer 1..3" (or "choices" + letter "answer").
Zero-shot, "reason step by step, answer in \\boxed{}"; give a large --max-new-tokens (e.g. 16384).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from infir.eval.grading import extract_answer, math_equal
from infir.eval.tasks.base import Mode, Sample, Source, Task, accuracy, limit_rows
from infir.eval.tasks.mmmu import LETTERS, extract_choice, mmmu_prompt

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
HUB = {
    "aime24": ("HuggingFaceH4/aime_2024", "train"),
    "amc23": ("math-ai/amc23", "test"),
    "olympiadbench": ("Hothan/OlympiadBench", "train"),
    "gpqa": ("Idavidrein/gpqa", "train"),
}


SOURCES = {
    name: Source(name, files={"test": (f"longcot/{name}.jsonl", f"{name}/test.jsonl")}, hub=hub,
                 config="gpqa_diamond" if name == "gpqa" else None, hub_splits={"test": split})
    for name, (hub, split) in HUB.items()
}


def _rows(name: str, data_dir: Path | None) -> list[dict[str, Any]]:
    return SOURCES[name].rows(data_dir, "test")


def _field(row: dict[str, Any], *names: str) -> Any:
    for n in names:
        if row.get(n) not in (None, ""):
            return row[n]
    raise KeyError(f"none of the fields {names} in record with keys {sorted(row)}")


def _math_answer(row: dict[str, Any]) -> str:
    answer = _field(row, "answer", "final_answer", "Answer")
    if isinstance(answer, list):
        answer = ",".join(str(a) for a in answer)
    answer = str(answer).strip()
    return answer[1:-1] if answer.startswith("$") and answer.endswith("$") and len(answer) > 1 else answer


def math_loader(name: str):
    def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
        samples = []
        for i, row in enumerate(limit_rows(_rows(name, data_dir), limit)):
            problem = _field(row, "problem", "question", "Question")
            samples.append(
                Sample(
                    id=f"{name}/{row.get('id', i)}",
                    reference=_math_answer(row),
                    prompt=[{"role": "user", "content": f"{problem}\n\n{MATH_INSTRUCTION}"}],
                )
            )
        return samples

    return load


def gpqa_options(row: dict[str, Any], key: str) -> tuple[list[str], int]:
    """Options and the right index; GPQA's raw format is shuffled with a seed fixed by the sample id."""
    if "choices" in row:
        answer = row["answer"]
        return list(row["choices"]), LETTERS.index(answer) if isinstance(answer, str) else int(answer)
    options = [
        row["Correct Answer"],
        row["Incorrect Answer 1"],
        row["Incorrect Answer 2"],
        row["Incorrect Answer 3"],
    ]
    order = list(range(4))
    random.Random(key).shuffle(order)
    return [options[i].strip() for i in order], order.index(0)


def load_gpqa(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    samples = []
    for i, row in enumerate(limit_rows(_rows("gpqa", data_dir), limit)):
        key = f"gpqa/{row.get('Record ID', row.get('id', i))}"
        options, right = gpqa_options(row, key)
        content = mmmu_prompt(_field(row, "Question", "question"), options)
        content = content.replace("directly.", 'after reasoning step by step; end with "The answer is (X)".')
        samples.append(
            Sample(
                id=key,
                prompt=[{"role": "user", "content": content}],
                reference=LETTERS[right],
                meta={"options": options},
            )
        )
    return samples


def grade_math(sample: Sample, completions: list[str]) -> dict[str, Any]:
    extracted = extract_answer(completions[0])
    return {"extracted": extracted, "correct": math_equal(extracted, sample.reference)}


def grade_gpqa(sample: Sample, completions: list[str]) -> dict[str, Any]:
    choice = extract_choice(completions[0], sample.meta["options"])
    return {"extracted": choice, "correct": choice == sample.reference}


def math_contamination(name: str):
    def texts(data_dir: Path | None) -> list[str]:
        return [str(_field(r, "problem", "question", "Question")) for r in _rows(name, data_dir)]

    return texts


def gpqa_contamination(data_dir: Path | None) -> list[str]:
    return [str(_field(r, "Question", "question")) for r in _rows("gpqa", data_dir)]


TASKS = {
    name: Task(name, "generate", math_loader(name), grade_math, accuracy, f"{name} (long CoT, local JSONL)",
               source=SOURCES[name], contamination=math_contamination(name))
    for name in ("aime24", "amc23", "olympiadbench")
}
TASKS["gpqa"] = Task(
    "gpqa", "generate", load_gpqa, grade_gpqa, accuracy, "GPQA diamond (long CoT, local JSONL)",
    source=SOURCES["gpqa"], contamination=gpqa_contamination,
)
