"""MMLU: 5-shot from dev, log-likelihood of " A".." D" (base); zero-shot letter answer (chat).

Accuracy is over all questions, i.e. each subject weighted by its size; the per-subject (macro)
mean, the length-normalised accuracy and the paper's normalised probability of the right option
(eq. 2) are reported too. `--limit N` keeps the first N questions of every subject.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infir.eval.tasks.base import Mode, NllItems, Sample, Source, Task, load_hub_rows
from infir.eval.tasks.mmmu import LETTERS, extract_choice, mmmu_prompt

NUM_SHOTS = 5
CHOICES = [" A", " B", " C", " D"]
# One CSV per subject with a header row question,choice0..choice3,answer (0-3 index) in each split folder.
SOURCE = Source("MMLU", files={"test": ("mmlu/test",), "dev": ("mmlu/dev",)}, hub="cais/mmlu", config="all")


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {
                "question": r["question"],
                "choices": [r[f"choice{i}"] for i in range(4)],
                "answer": int(r["answer"]),
            }
            for r in csv.DictReader(f)
        ]


def _subjects(data_dir: Path | None, split: str) -> dict[str, list[dict[str, Any]]]:
    if data_dir is None:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in load_hub_rows(SOURCE.hub or "", SOURCE.config, split):
            out[r["subject"]].append(
                {"question": r["question"], "choices": list(r["choices"]), "answer": int(r["answer"])}
            )
        return dict(out)
    folder = SOURCE.path(Path(data_dir), split)
    if folder is None:
        raise FileNotFoundError(
            f"MMLU ({split}): {Path(data_dir) / 'mmlu' / split} not found. Pass --data-dir pointing at a folder "
            f"in the shared/data layout, or get it from the Hugging Face hub: {SOURCE.hub} (all)"
        )
    return {p.name[: -len(f"_{split}.csv")]: _read_csv(p) for p in sorted(folder.glob(f"*_{split}.csv"))}


def format_question(row: dict[str, Any], with_answer: bool) -> str:
    lines = [row["question"].strip(), *[f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"])]]
    text = "\n".join(lines) + "\nAnswer:"
    return text + f" {LETTERS[row['answer']]}\n\n" if with_answer else text


def base_prompt(subject: str, row: dict[str, Any], shots: Sequence[dict[str, Any]]) -> str:
    header = (
        f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    )
    return header + "".join(format_question(s, True) for s in shots) + format_question(row, False)


def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
    tests, devs = _subjects(data_dir, "test"), _subjects(data_dir, "dev") if mode == "base" else {}
    samples = []
    for subject, rows in sorted(tests.items()):
        for i, row in enumerate(rows[:limit] if limit is not None else rows):
            meta = {"subject": subject, "options": row["choices"]}
            if mode == "base":
                samples.append(
                    Sample(
                        id=f"mmlu/{subject}/{i}",
                        prompt=base_prompt(subject, row, devs[subject][:NUM_SHOTS]),
                        reference=row["answer"],
                        choices=CHOICES,
                        meta=meta,
                    )
                )
            else:
                content = mmlu_chat_content(subject, row)
                samples.append(
                    Sample(
                        id=f"mmlu/{subject}/{i}",
                        prompt=[{"role": "user", "content": content}],
                        reference=row["answer"],
                        meta=meta,
                    )
                )
    return samples


def mmlu_chat_content(subject: str, row: dict[str, Any]) -> str:
    intro = f"The following is a multiple choice question about {subject.replace('_', ' ')}.\n\n"
    return intro + mmmu_prompt(row["question"], row["choices"])


def grade_scores(sample: Sample, scores: list[tuple[float, int]]) -> dict[str, Any]:
    logps = [s for s, _ in scores]
    best = max(range(len(logps)), key=lambda i: logps[i])
    lengths = [len(c) for c in sample.choices or CHOICES]
    best_norm = max(range(len(logps)), key=lambda i: logps[i] / lengths[i])
    top = max(logps)
    total = sum(math.exp(s - top) for s in logps)
    return {
        "extracted": LETTERS[best],
        "correct": best == sample.reference,
        "correct_norm": best_norm == sample.reference,
        "p_norm": math.exp(logps[sample.reference] - top) / total,
        "subject": sample.meta["subject"],
    }


def grade_reply(sample: Sample, completions: list[str]) -> dict[str, Any]:
    choice = extract_choice(completions[0], sample.meta["options"])
    return {
        "extracted": choice,
        "correct": choice == LETTERS[sample.reference],
        "subject": sample.meta["subject"],
    }


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    if not rows:
        return {"accuracy": 0.0, "n": 0.0}
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_subject[r["subject"]].append(r)
    out = {
        "accuracy": sum(bool(r["correct"]) for r in rows) / len(rows),
        "macro_accuracy": sum(sum(bool(r["correct"]) for r in rs) / len(rs) for rs in by_subject.values())
        / len(by_subject),
    }
    if "correct_norm" in rows[0]:
        out["accuracy_norm"] = sum(bool(r["correct_norm"]) for r in rows) / len(rows)
        out["p_norm"] = sum(r["p_norm"] for r in rows) / len(rows)
    out["n"] = float(len(rows))
    out["subjects"] = float(len(by_subject))
    return out


def contamination(data_dir: Path | None) -> list[str]:
    return [" ".join([r["question"], *r["choices"]]) for rows in _subjects(data_dir, "test").values() for r in rows]


def nll_items(data_dir: Path | None, limit: int) -> NllItems:
    """Question -> each option's text (eq. 2 of §2.3.1), `limit` items spread evenly over the subjects."""
    items = [(f"Question: {r['question']}\nAnswer:", [f" {c}" for c in r["choices"]], int(r["answer"]))
             for _, rows in sorted(_subjects(data_dir, "test").items()) for r in rows]
    step = max(1, len(items) // limit) if limit else 1
    return NllItems(choices=items[::step][:limit])


TASK = Task("mmlu", "loglik", load, grade_scores, aggregate, "MMLU (57 subjects), 5-shot log-likelihood",
            source=SOURCE, contamination=contamination, nll_items=nll_items, modes=("base",))
CHAT_TASK = Task("mmlu", "generate", load, grade_reply, aggregate, "MMLU zero-shot, letter extracted from the reply",
                 source=SOURCE, contamination=contamination, nll_items=nll_items, modes=("chat",))
TASKS = [TASK, CHAT_TASK]
