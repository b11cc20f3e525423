"""Tasks are discovered, and a benchmark added as one file outside the package is picked up by
`infir eval`, by decontamination and by the offline NLL evals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infir.eval.tasks import get_task, resolve_task, task_names

TOY_TASK = '''
"""A toy benchmark kept outside infir: capital cities."""
from infir.eval.tasks.base import NllItems, Sample, Source, Task, accuracy

SOURCE = Source("toybench", files={"test": ("toybench/test.jsonl",)})


def load(data_dir, mode, limit):
    rows = SOURCE.rows(data_dir, "test")[:limit]
    if mode == "base":
        return [Sample(id=f"toy/{i}", prompt=f"Q: {r['q']}\\nA:", reference=r["a"], stop=["\\n"])
                for i, r in enumerate(rows)]
    return [Sample(id=f"toy/{i}", prompt=[{"role": "user", "content": r["q"]}], reference=r["a"])
            for i, r in enumerate(rows)]


def grade(sample, completions):
    return {"extracted": completions[0].strip(), "correct": completions[0].strip() == sample.reference}


def contamination(data_dir):
    return [r["q"] + " " + r["a"] for r in SOURCE.rows(data_dir, "test")]


def nll_items(data_dir, limit):
    return NllItems(answers=[(f"Q: {r['q']}\\nA:", " " + r["a"]) for r in SOURCE.rows(data_dir, "test")[:limit]])


TASK = Task("toybench", "generate", load, grade, accuracy, "capital cities", source=SOURCE,
            contamination=contamination, nll_items=nll_items)
'''
QUESTIONS = [
    {"q": "which city is the capital of the small mountain kingdom of northern lorem ipsum", "a": "Dolor"},
    {"q": "which city is the capital of the large island republic of southern sit amet", "a": "Consectetur"},
    {"q": "which city is the capital of the windy plateau province of eastern adipiscing", "a": "Elit"},
]


@pytest.fixture()
def toy(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(tasks folder with toybench.py, data folder with toybench/test.jsonl)."""
    monkeypatch.delenv("INFIR_TASKS_PATH", raising=False)
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    (tasks / "toybench.py").write_text(TOY_TASK)
    data = tmp_path / "data"
    (data / "toybench").mkdir(parents=True)
    (data / "toybench" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QUESTIONS))
    return tasks, data


def test_package_tasks_are_discovered_with_their_declarations() -> None:
    names = task_names()
    for name in ("gsm8k", "math", "math500", "humaneval", "mbpp", "mmlu", "nll", "aime24", "gpqa"):
        assert name in names
    assert get_task("mmlu", "base").kind == "loglik" and get_task("mmlu", "chat").kind == "generate"
    for name in ("gsm8k", "math", "math500", "humaneval", "mbpp", "mmlu"):
        task = get_task(name)
        assert task.source is not None and task.source.hub and task.contamination is not None
    task, root = resolve_task("data/gsm8k/test.jsonl")  # type: ignore[misc]
    assert task.name == "gsm8k" and root == Path("data")
    assert resolve_task("some/other/file.jsonl") is None
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")


def test_outside_task_file_is_picked_up_by_eval_cli(toy, tiny_model_dir, tmp_path) -> None:
    tasks, data = toy
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "-m", "infir.cli", "eval", "--model", str(tiny_model_dir), "--tasks", "toybench",
         "--tasks-dir", str(tasks), "--data-dir", str(data), "--output", str(out), "--max-new-tokens", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"]["toybench"]["n"] == 3.0
    rows = [json.loads(line) for line in (out / "toybench" / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["prompt"] == f"Q: {QUESTIONS[0]['q']}\nA:"


def test_outside_task_file_is_picked_up_by_decontamination(toy, tmp_path) -> None:
    from infir.data.config import CurateConfig
    from infir.data.pipeline import run_curate
    from infir.eval.tasks import add_tasks_dir

    tasks, data = toy
    add_tasks_dir(tasks)
    corpus = tmp_path / "corpus.jsonl"
    clean = ("The committee met on a quiet morning to discuss the budget for the coming year, and after a long "
             "debate about roads, schools and parks the members agreed to meet again next week. ")
    leaked = clean + "Trivia night: " + QUESTIONS[1]["q"] + "? The answer was " + QUESTIONS[1]["a"] + "."
    corpus.write_text(json.dumps({"id": "clean", "text": clean * 3}) + "\n" + json.dumps({"id": "leak", "text": leaked}) + "\n")
    cfg = CurateConfig.model_validate({"heuristics": {"enabled": False}, "minhash": {"enabled": False},
                                       "decontam": {"benchmarks": ["toybench"]}})
    stats = run_curate(cfg, [corpus], tmp_path / "out", benchmarks_dir=data)
    assert stats["kept"] == 1 and stats["dropped"] == {"contaminated_toybench": 1}


def test_outside_task_file_is_picked_up_by_offline_evals(toy, tmp_path, tiny_model_dir) -> None:
    from infir.eval.tasks import add_tasks_dir
    from infir.model.tokenizer import load_tokenizer
    from infir.train.config import OfflineEvalConfig
    from infir.train.distributed import DistEnv
    from infir.train.offline_eval import OfflineEvaluator

    tasks, data = toy
    add_tasks_dir(tasks)
    cfg = OfflineEvalConfig(answer_tasks=["toybench"], benchmarks_dir=str(data))
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    ev = OfflineEvaluator.build(cfg, load_tokenizer(tiny_model_dir), tmp_path / "eval", env)
    assert ev is not None and list(ev.answers) == ["toybench"] and len(ev.answers["toybench"]) == 3
