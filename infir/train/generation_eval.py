"""Few-shot generation eval for the annealing phase (paper §2.3.2): precision over recall.

A task is a JSONL file of GSM8K-style items ({question, answer ending '#### N'} or {prompt, answer});
the first `shots` items are the exemplars, the next `limit` are scored by exact final answers
(greedy decoding through `infir.eval.generation.load_generator`, graded by `infir.eval.grading`).
"""

from __future__ import annotations

from pathlib import Path

from infir.utils.io import read_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)


def _item(row: dict) -> tuple[str, str, str]:
    """(question, worked answer, final answer)."""
    if "question" in row and "answer" in row:
        worked = str(row["answer"])
        final = worked.rsplit("####", 1)[-1].strip() if "####" in worked else worked.strip()
        return row["question"], worked, final
    return row["prompt"], str(row["answer"]), str(row["answer"]).strip()


def few_shot_prompt(exemplars: list[tuple[str, str, str]], question: str) -> str:
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a, _ in exemplars)
    return f"{shots}Question: {question}\nAnswer:"


def few_shot_generation_eval(model_dir: Path, tasks: list[str], limit: int, shots: int = 4,
                             max_new_tokens: int = 256) -> dict[str, float]:
    """Accuracy per task (`<task>/gen_acc`); {} with a warning when infir.eval is unavailable."""
    try:
        from infir.eval.generation import SamplingParams, load_generator
        from infir.eval.grading import extract_answer, math_equal
    except ImportError as e:  # the eval room is optional for training
        log.warning("few-shot generation eval skipped: infir.eval is not available (%s)", e)
        return {}
    generator = load_generator(model_dir)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, stop=["\n\nQuestion:", "\n\n\n"])
    results = {}
    for task in tasks:
        rows = [_item(r) for _, r in zip(range(shots + limit), read_jsonl(task), strict=False)]
        exemplars, scored = rows[:shots], rows[shots:]
        if not scored:
            log.warning("generation task %s has no items beyond the %d exemplars", task, shots)
            continue
        completions = generator.generate([few_shot_prompt(exemplars, q) for q, _, _ in scored], params)
        correct = sum(math_equal(extract_answer(c.text), final)
                      for c, (_, _, final) in zip(completions, scored, strict=True))
        name = Path(task).parent.name if Path(task).stem in {"test", "train"} else Path(task).stem
        results[f"{name}/gen_acc"] = correct / len(scored)
    return results
