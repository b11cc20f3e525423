"""Few-shot generation eval for the annealing phase (paper §2.3.2): precision over recall.

Each entry is an eval task (a name such as `gsm8k`, or the path of a task's local test file such as
`data/gsm8k/test.jsonl`); it runs through `infir.eval.runner.run_task` in base mode, so the anneal-time
numbers use exactly the few-shot prompts, stops and grading of the base-model evaluation (Table 1).
"""

from __future__ import annotations

from pathlib import Path

from infir.utils.log import get_logger

log = get_logger(__name__)


def task_generation_eval(model_dir: Path, refs: list[str], limit: int, out_dir: Path,
                         data_dir: str | Path | None = None, max_new_tokens: int = 256) -> dict[str, float]:
    """Accuracy (`<task>/gen_acc`, or the task's main metric) of the saved model on the first `limit` items."""
    from infir.eval.runner import main_metric, run_task
    from infir.eval.tasks import resolve_task
    from infir.generation import load_generator

    generator = load_generator(model_dir)
    results: dict[str, float] = {}
    for ref in refs:
        resolved = resolve_task(ref, data_dir)
        if resolved is None:
            raise ValueError(f"generation task {ref!r}: not an eval task name nor a task's test file "
                             "(e.g. gsm8k, or DATA/gsm8k/test.jsonl)")
        task, task_dir = resolved
        metrics = run_task(task.name, generator, task_dir, out_dir, limit=limit, mode="base",
                           max_new_tokens=max_new_tokens)
        metric = main_metric(metrics)
        if metric is not None:
            results[f"{task.name}/gen_acc" if metric == "accuracy" else f"{task.name}/{metric}"] = metrics[metric]
    return results
