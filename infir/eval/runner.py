"""Run tasks against a model: per-sample JSONL (resumable), a summary JSON and a Markdown table.

Layout of `output/`:
  <task>/samples.jsonl   one graded row per sample (prompt, completion, extracted, correct, ...)
  <task>/config.json     what produced the rows; a different config starts the task afresh
  summary.json           task -> metrics
  results.md             a table for the run report
Finished samples are appended as they complete, so an interrupted eval resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infir.eval.tasks import get_task
from infir.eval.tasks.base import Mode, Sample, Task
from infir.generation import SamplingParams
from infir.utils.io import atomic_write_json, atomic_write_text, write_jsonl
from infir.utils.log import get_logger, progress

log = get_logger(__name__)
MAIN_METRIC = ("accuracy", "pass@1", "nll_per_token")


def load_cached_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Rows already graded; a torn last line (crash mid-write) is dropped and the file rewritten."""
    if not path.exists():
        return {}
    rows, bad = {}, 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows[row["id"]] = row
        except (json.JSONDecodeError, KeyError):
            bad += 1
    if bad:
        log.warning(
            "%s: %d unreadable line(s) dropped (interrupted write); those samples will be redone", path, bad
        )
        write_jsonl(path, rows.values())
    return rows


def _params(
    sample: Sample, max_new_tokens: int, temperature: float, top_p: float, seed: int | None
) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=list(sample.stop), seed=seed
    )


def _complete(
    generator: Any,
    samples: Sequence[Sample],
    num_samples: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
) -> list[list[str]]:
    """num_samples completions per sample (seeds seed, seed+1, ... when sampling)."""
    jobs = [(s, j) for s in samples for j in range(num_samples)]
    params = [
        _params(s, max_new_tokens, temperature, top_p, seed + j if temperature > 0 else None) for s, j in jobs
    ]
    text_jobs = [i for i, (s, _) in enumerate(jobs) if isinstance(s.prompt, str)]
    chat_jobs = [i for i, (s, _) in enumerate(jobs) if not isinstance(s.prompt, str)]
    texts: list[str] = [""] * len(jobs)
    if text_jobs:
        out = generator.generate([jobs[i][0].prompt for i in text_jobs], [params[i] for i in text_jobs])
        for i, c in zip(text_jobs, out, strict=False):
            texts[i] = c.text
    if chat_jobs:
        out = generator.generate_chat([jobs[i][0].prompt for i in chat_jobs], [params[i] for i in chat_jobs])
        for i, c in zip(chat_jobs, out, strict=False):
            texts[i] = c.text
    return [texts[k * num_samples : (k + 1) * num_samples] for k in range(len(samples))]


def _grade_chunk(
    task: Task, generator: Any, chunk: Sequence[Sample], cfg: dict[str, Any]
) -> list[dict[str, Any]]:
    if task.kind == "loglik":
        requests = [(s.prompt, c) for s in chunk for c in s.choices or []]
        scores = generator.loglikelihood(requests)
        outputs, k = [], 0
        for s in chunk:
            outputs.append(scores[k : k + len(s.choices or [])])
            k += len(s.choices or [])
    else:
        outputs = _complete(
            generator,
            chunk,
            cfg["num_samples"],
            cfg["max_new_tokens"],
            cfg["temperature"],
            cfg["top_p"],
            cfg["seed"],
        )
    if task.grade_in_threads:
        with ThreadPoolExecutor(max_workers=max(1, min(len(chunk), os.cpu_count() or 1))) as pool:
            graded = list(pool.map(lambda so: task.grade(*so), zip(chunk, outputs, strict=True)))
    else:
        graded = [task.grade(s, o) for s, o in zip(chunk, outputs, strict=True)]
    rows = []
    for s, out, g in zip(chunk, outputs, graded, strict=False):
        row: dict[str, Any] = {"id": s.id, "prompt": s.prompt, "reference": s.reference}
        if task.kind == "loglik":
            row["scores"] = [list(x) for x in out]
        else:
            row["completion"] = out[0]
            if len(out) > 1:
                row["completions"] = out
        row.update(g)
        row.setdefault("extracted", None)
        rows.append(row)
    return rows


def run_task(
    task_name: str,
    generator: Any,
    data_dir: Path | None,
    output: Path,
    limit: int | None = None,
    mode: Mode = "base",
    max_new_tokens: int = 256,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    chunk_size: int = 32,
) -> dict[str, float]:
    task = get_task(task_name, mode)
    samples = task.load(data_dir, mode, limit)
    folder = output / task_name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "task": task_name,
        "mode": mode,
        "max_new_tokens": max_new_tokens,
        "num_samples": num_samples,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
    }
    cache_path, cfg_path = folder / "samples.jsonl", folder / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != cfg and cache_path.exists():
        log.warning("%s: settings changed since the cached run; starting this task afresh", folder)
        cache_path.replace(folder / "samples.stale.jsonl")
    atomic_write_json(cfg_path, cfg)
    done = load_cached_rows(cache_path)
    todo = [s for s in samples if s.id not in done]
    if done:
        log.info(
            "%s: %d of %d samples cached, %d to do",
            task_name,
            len(samples) - len(todo),
            len(samples),
            len(todo),
        )
    with progress() as bar, open(cache_path, "a", encoding="utf-8") as cache:
        job = bar.add_task(task_name, total=len(samples), completed=len(samples) - len(todo))
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            for row in _grade_chunk(task, generator, chunk, cfg):
                cache.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                done[row["id"]] = row
            cache.flush()
            os.fsync(cache.fileno())
            bar.advance(job, len(chunk))
    rows = [done[s.id] for s in samples]
    metrics = task.aggregate(rows) if task.aggregate else {}
    log.info("%s: %s (samples in %s)", task_name, json.dumps(metrics), cache_path)
    return metrics


def main_metric(metrics: dict[str, float]) -> str | None:
    """The headline metric of a task's results (accuracy, pass@1 or NLL per token)."""
    return next((m for m in MAIN_METRIC if m in metrics), None)


def markdown_table(summary: dict[str, dict[str, float]], mode: str) -> str:
    lines = ["| Task | Mode | Metric | Score | N |", "|---|---|---|---:|---:|"]
    for task, metrics in summary.items():
        if "base_pass@1" in metrics:  # EvalPlus: the base-tests column beside the plus one (paper Tables 1-2)
            n = int(metrics.get("n", 0))
            lines.append(f"| {task} (base tests) | {mode} | pass@1 | {100 * metrics['base_pass@1']:.2f} | {n} |")
        metric = main_metric(metrics)
        if metric is None:
            score = "-"
        elif metric == "nll_per_token":  # not a percentage
            score = f"{metrics[metric]:.4f}"
        else:
            score = f"{100 * metrics[metric]:.2f}"
        lines.append(f"| {task} | {mode} | {metric or '-'} | {score} | {int(metrics.get('n', 0))} |")
    return "\n".join(lines) + "\n"


def run_eval(
    model: Path | str | Any,
    tasks: list[str],
    data_dir: Path | None,
    output: Path,
    limit: int | None = None,
    mode: str = "base",
    max_new_tokens: int = 256,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Evaluate `model` (a model folder, an OpenAI-compatible URL, or a Generator) on `tasks`.

    Returns {task: metrics}; writes per-sample rows, summary.json and results.md under `output`.
    """
    if mode not in ("base", "chat"):
        raise ValueError(f"mode must be 'base' or 'chat', got {mode!r}")
    for name in tasks:
        get_task(name, mode)  # unknown names fail before any model is loaded
    output = Path(output)
    if isinstance(model, (str, Path)):
        from infir.generation import load_generator

        generator = load_generator(model)
        model_name = str(model)
    else:
        generator, model_name = model, type(model).__name__
    summary = {}
    for name in tasks:
        summary[name] = run_task(
            name,
            generator,
            data_dir,
            output,
            limit,
            mode,
            max_new_tokens,  # type: ignore[arg-type]
            num_samples,
            temperature,
            top_p,
            seed,
        )
    atomic_write_json(
        output / "summary.json",
        {
            "model": model_name,
            "mode": mode,
            "limit": limit,
            "max_new_tokens": max_new_tokens,
            "tasks": summary,
        },
    )
    atomic_write_text(output / "results.md", markdown_table(summary, mode))
    log.info("eval finished: summary in %s, table in %s", output / "summary.json", output / "results.md")
    return summary


__all__ = ["load_cached_rows", "main_metric", "markdown_table", "run_eval", "run_task"]
