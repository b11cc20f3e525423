"""The eval runner end to end on a tiny model: files, metrics, resume after a crash, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infir.eval.runner import run_eval
from infir.generation import load_generator


class CountingGenerator:
    """The real generator, counting how many requests reach it (to see what a resume redoes)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def generate(self, prompts, params, on_token=None):
        self.calls += len(prompts)
        return self.inner.generate(prompts, params, on_token)

    def generate_chat(self, conversations, params, on_token=None):
        self.calls += len(conversations)
        return self.inner.generate_chat(conversations, params, on_token)

    def loglikelihood(self, requests, batch_size=8):
        self.calls += len(requests)
        return self.inner.loglikelihood(requests, batch_size)


def small_data_dir(shared_data: Path, tmp_path: Path) -> Path:
    """The real files, but only 3 MMLU subjects and 3 short held-out texts (keeps the test fast)."""
    data = tmp_path / "data"
    (data / "mmlu" / "test").mkdir(parents=True)
    (data / "mmlu" / "dev").mkdir(parents=True)
    for subject in ("abstract_algebra", "anatomy", "virology"):
        for split in ("test", "dev"):
            name = f"{subject}_{split}.csv"
            (data / "mmlu" / split / name).symlink_to(shared_data / "mmlu" / split / name)
    (data / "gsm8k").symlink_to(shared_data / "gsm8k")
    (data / "nll").mkdir()
    (data / "nll" / "heldout.txt").write_text(
        "The cat sat on the mat.\nTwo plus three is five.\ndef f(x): return x\n"
    )
    return data


def test_run_eval_writes_results_and_resumes(tiny_model_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    gen = CountingGenerator(load_generator(tiny_model_dir))
    out, data = tmp_path / "eval", small_data_dir(shared_data, tmp_path)
    tasks = ["nll", "gsm8k", "mmlu"]
    summary = run_eval(gen, tasks, data, out, limit=2, mode="base", max_new_tokens=6)
    assert set(summary) == set(tasks)
    assert summary["mmlu"]["n"] == 6 and summary["mmlu"]["subjects"] == 3
    assert summary["nll"]["n"] == 2 and summary["nll"]["nll_per_token"] > 0
    assert summary["gsm8k"]["n"] == 2
    rows = [json.loads(line) for line in (out / "gsm8k" / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["prompt"].startswith("Question:") and {"completion", "extracted", "correct"} <= set(
        rows[0]
    )
    assert json.loads((out / "summary.json").read_text())["tasks"]["mmlu"] == summary["mmlu"]
    table = (out / "results.md").read_text()
    assert "| mmlu | base | accuracy |" in table and "| nll | base | nll_per_token |" in table

    # A crash mid-write leaves a torn last line: only that sample is redone, nothing is duplicated.
    cache = out / "mmlu" / "samples.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    gen.calls = 0
    again = run_eval(gen, tasks, data, out, limit=2, mode="base", max_new_tokens=6)
    assert gen.calls == 4  # one MMLU question, four choices
    assert all(again[t] == pytest.approx(summary[t], rel=1e-5) for t in tasks)  # batch shapes differ
    assert len(cache.read_text().splitlines()) == 6

    # Other settings: the task starts afresh rather than mixing rows made differently.
    gen.calls = 0
    run_eval(gen, ["gsm8k"], data, out, limit=2, mode="base", max_new_tokens=4)
    assert gen.calls == 2


def test_chat_mode_code_task(tiny_model_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    summary = run_eval(
        tiny_model_dir, ["humaneval"], shared_data, tmp_path / "e", limit=2, mode="chat", max_new_tokens=4
    )
    assert summary["humaneval"]["pass@1"] == 0.0 and summary["humaneval"]["n"] == 2  # a random model fails


def test_cli(tiny_model_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "INFIR_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "infir.cli",
        "eval",
        "--model",
        str(tiny_model_dir),
        "--tasks",
        "math500",
        "--data-dir",
        str(shared_data),
        "--limit",
        "1",
        "--mode",
        "chat",
        "--max-new-tokens",
        "4",
        "--output",
        str(tmp_path / "cli"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| math500 | chat | accuracy |" in done.stdout
    bad = subprocess.run(
        cmd[:6] + ["--tasks", "nosuchtask", "--output", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode != 0 and "unknown task" in bad.stderr
