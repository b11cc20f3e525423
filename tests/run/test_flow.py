"""`infir run` end to end on a very small embedded corpus: every stage, the report, skip, --from, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from infir.utils.io import read_json

MICRO_TRAIN = {"model": "micro", "seq_len": 64, "micro_batch_size": 4, "global_batch_size": 8,
               "logging": {"interval": 1, "tensorboard": False}, "eval_interval": 1000,
               "runtime": {"loss_chunk_size": 256}}
SMALL_RECIPE = {
    "name": "small",
    "corpus": {"builtin": {"code_files": 8, "doc_modules": 15, "math_train": 120, "math_test": 6,
                           "boilerplate_pages": 6, "short_pages": 6, "contaminated_pages": 2}},
    "curate": {"heuristics": {"domains": ["web"]}},
    "tokenizer": {"vocab_size": 400},
    "pretrain": {**MICRO_TRAIN, "max_steps": 12, "optimizer": {"lr": 3e-3},
                 "schedule": {"kind": "wsd", "warmup_steps": 2}, "checkpoint": {"interval": 4}},
    "anneal": {**MICRO_TRAIN, "max_steps": 4, "optimizer": {"lr": 1e-3}, "schedule": {"kind": "decay", "warmup_steps": 0},
               "checkpoint": {"interval": 2},
               "sources": [{"path": "math", "weight": 1.0}, {"path": "synthetic", "weight": 1.0}]},
    "sft": {"epochs": 1, "max_steps": 4, "optimizer": {"lr": 1e-3}, "global_batch_size": 8, "micro_batch_size": 4,
            "max_length": 128, "checkpoint": {"interval": 2}, "runtime": {"loss_chunk_size": 256}},
    "eval": {"tasks": ["nll", "gsm8k"], "limit": 3, "max_new_tokens": 12, "mode": "chat"},
}


def _infir(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "INFIR_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "1"}
    env.pop("INFIR_DATA", None)
    return subprocess.run([sys.executable, "-m", "infir.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("flow")
    recipe = root / "small.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_RECIPE))
    proc = _infir("run", str(recipe), "--runs-dir", str(root / "runs"), cwd=root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return recipe, root / "runs" / "small"


def test_every_stage_ran_and_left_its_outputs(finished_run) -> None:
    _, run = finished_run
    manifest = read_json(run / "manifest.json")
    assert list(manifest["stages"]) == ["corpus", "curate", "tokenizer", "pretrain", "anneal", "sft", "eval"]
    assert all(s["status"] == "done" for s in manifest["stages"].values())
    assert {"torch", "transformers", "infir"} <= set(manifest["versions"])
    stats = read_json(run / "curate" / "stats.json")
    dropped = sum(stats["dropped"].values())
    assert stats["input_records"] == stats["kept"] + dropped + stats["quarantined"]
    assert dropped > 0, "the noisy corpus must lose duplicates, boilerplate and short pages"
    for stage in ("pretrain", "anneal", "sft"):
        assert (run / stage / "model" / "model.safetensors").exists()
    summary = read_json(run / "eval" / "summary.json")["tasks"]
    assert set(summary) == {"nll", "gsm8k"}


def test_model_folders_load_in_transformers_with_chat_template(finished_run) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, run = finished_run
    folder = run / "sft" / "model"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    text = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == model.config.vocab_size


def test_report_shows_every_stage_with_numbers(finished_run) -> None:
    _, run = finished_run
    md = (run / "report.md").read_text()
    for heading in ("Stages and timings", "Corpus", "Curation", "Training", "Evaluation"):
        assert f"## {heading}" in md
    html = (run / "report.html").read_text()
    assert "<table>" in html and "loss_curves.png" in html and "curation_funnel.png" in html
    assert (run / "report_assets" / "loss_curves.png").stat().st_size > 1000


def test_rerun_skips_and_from_reruns_downstream(finished_run) -> None:
    recipe, run = finished_run
    before = read_json(run / "manifest.json")["stages"]
    proc = _infir("run", str(recipe), "--runs-dir", str(run.parent), cwd=run.parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("skipped") == 7
    proc = _infir("run", str(recipe), "--runs-dir", str(run.parent), "--from", "eval", cwd=run.parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = read_json(run / "manifest.json")["stages"]
    assert after["sft"]["finished"] == before["sft"]["finished"]
    assert after["eval"]["finished"] != before["eval"]["finished"] or after["eval"]["seconds"] != before["eval"]["seconds"]
    proc = _infir("run", str(recipe), "--runs-dir", str(run.parent), "--from", "nope", cwd=run.parent.parent)
    assert proc.returncode == 2 and "not a stage" in proc.stderr


def test_run_killed_mid_pretrain_resumes_from_its_checkpoint(tmp_path) -> None:
    recipe = dict(SMALL_RECIPE, name="killed")
    recipe["pretrain"] = {**recipe["pretrain"], "max_steps": 40, "checkpoint": {"interval": 4}}
    for stage in ("anneal", "sft", "eval"):
        recipe.pop(stage)
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "infir.cli", "run", str(path), "--runs-dir", str(tmp_path / "runs")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "runs" / "killed" / "pretrain" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpts.exists() and any(p.name.startswith("step_") for p in ckpts.iterdir())):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = read_json(tmp_path / "runs" / "killed" / "manifest.json")
    assert manifest["stages"]["pretrain"]["status"] == "running", "the kill must land inside the pretrain stage"
    done = _infir("run", str(path), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    entry = read_json(tmp_path / "runs" / "killed" / "manifest.json")["stages"]["pretrain"]
    assert entry["resumed"] is True and entry["summary"]["steps"] == 40
    steps = [json.loads(line)["step"] for line in (tmp_path / "runs" / "killed" / "pretrain" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps[-1] == 40
    assert "resuming" in done.stderr


def test_partial_stage_with_changed_config_is_discarded_not_resumed(tmp_path) -> None:
    from infir.run import run_recipe
    from infir.utils.io import atomic_write_json

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "partial", "corpus": SMALL_RECIPE["corpus"]}))
    run = tmp_path / "runs" / "partial"
    (run / "corpus").mkdir(parents=True)
    (run / "corpus" / "stale.txt").write_text("left by a run with another configuration")
    atomic_write_json(run / "manifest.json", {"stages": {"corpus": {"status": "running", "config_hash": "old"}}})
    run_recipe(recipe, runs_dir=tmp_path / "runs")
    entry = read_json(run / "manifest.json")["stages"]["corpus"]
    assert entry["status"] == "done" and entry["resumed"] is False
    assert not (run / "corpus" / "stale.txt").exists()
