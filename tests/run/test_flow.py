"""`infir run` end to end on a very small embedded corpus: the whole paper (pretrain -> anneal -> Table 1 ->
synthesis against the scripted stand-in teacher -> judged SFT mixture -> SFT -> Table 2 -> long-CoT labels -> long-CoT
SFT -> Table 6 -> VLM stages 1-3 -> Table 3 -> export), the report, skip, --from, resume, and bad input."""

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
PAPER_STAGES = {
    "eval_base": {"tasks": ["gsm8k"], "limit": 3, "max_new_tokens": 8},
    "synth": {"teacher": {"source": "scripted"}, "embedded_seeds": 12, "evolve": {"per_seed": 1, "ops": ["constraints"]},
              "respond": {"candidates": 2}},
    "sft_data": {"judge": {"source": "scripted"}, "embedded_sets": 12, "select": {"max_records": 24}},
    "long_cot_data": {"distil": {"teacher": {"source": "scripted"}, "embedded_seeds": 10},
                      "reference": {"source": "sft", "concurrency": 16}, "reference_max_tokens": 16,
                      "judge": {"source": "scripted"}, "domains": ["counting", "money", "rates", "ages", "division",
                                                                   "geometry"]},
    "long_cot": {"epochs": 1, "max_steps": 2, "global_batch_size": 4, "micro_batch_size": 2, "max_length": 256,
                 "selection": {"s1_subset": 6}, "optimizer": {"lr": 1e-3}, "checkpoint": {"interval": 2},
                 "runtime": {"loss_chunk_size": 256}},
    "eval_long_cot": {"tasks": ["gsm8k"], "limit": 3, "max_new_tokens": 16},
    "vlm": {"vision": {"preset": "tiny", "image_size": 32, "patch_size": 16, "hidden_size": 32, "num_layers": 1,
                       "num_heads": 2, "intermediate_size": 64, "aspect": "squash"},
            "synth": {"train_screens": 16, "ocr_images": 8, "eval_screens": 4, "render_width": 96, "screen_grid": 3,
                      "min_elements": 2, "max_elements": 3},
            "stages": [{"name": "stage1-align", "data": {"caption": 1.0}, "num_samples": 8, "batch_size": 8,
                        "vision": "frozen", "projector": "full", "lm": "frozen", "max_length": 256},
                       {"name": "stage2-vision", "data": {"grounding": 0.5, "ocr": 0.5}, "num_samples": 8,
                        "batch_size": 8, "vision": "full", "projector": "full", "lm": "frozen", "max_length": 256},
                       {"name": "stage3-all", "data": {"grounding": 0.5, "trajectory": 0.5}, "num_samples": 8,
                        "batch_size": 8, "vision": "full", "projector": "full", "lm": "full", "max_length": 256}],
            "eval": {"max_new_tokens": 8, "trajectory_max_new_tokens": 8, "trajectory_episodes": 2, "batch_size": 16},
            "device": "cpu", "runtime": {"dtype": "fp32"}},
    "eval_vl": {"standin_questions": 6, "max_new_tokens": 8},
    "export": {"formats": ["hf", "gguf"], "gguf_quant": "f16"},
}
ALL_STAGES = ["corpus", "curate", "tokenizer", "pretrain", "anneal", "eval_base", "synth", "sft_data", "sft", "eval",
              "long_cot_data", "long_cot", "eval_long_cot", "vlm", "eval_vl", "export"]


def _infir(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "INFIR_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "1"}
    env.pop("INFIR_DATA", None)
    return subprocess.run([sys.executable, "-m", "infir.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("flow")
    recipe = root / "small.yaml"
    recipe.write_text(yaml.safe_dump({**SMALL_RECIPE, **PAPER_STAGES}))
    proc = _infir("run", str(recipe), "--runs-dir", str(root / "runs"), cwd=root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return recipe, root / "runs" / "small"


def test_every_stage_ran_and_left_its_outputs(finished_run) -> None:
    _, run = finished_run
    manifest = read_json(run / "manifest.json")
    assert list(manifest["stages"]) == ALL_STAGES
    assert all(s["status"] == "done" for s in manifest["stages"].values())
    assert {"torch", "transformers", "infir"} <= set(manifest["versions"])
    stats = read_json(run / "curate" / "stats.json")
    dropped = sum(stats["dropped"].values())
    assert stats["input_records"] == stats["kept"] + dropped + stats["quarantined"]
    assert dropped > 0, "the noisy corpus must lose duplicates, boilerplate and short pages"
    for stage in ("pretrain", "anneal", "sft", "long_cot"):
        assert (run / stage / "model" / "model.safetensors").exists()
    summary = read_json(run / "eval" / "summary.json")["tasks"]
    assert set(summary) == {"nll", "gsm8k"}
    assert read_json(run / "eval_base" / "summary.json")["mode"] == "base"


def test_synthesis_rejects_wrong_answers_and_sft_trains_on_the_judged_mixture(finished_run) -> None:
    _, run = finished_run
    stages = read_json(run / "manifest.json")["stages"]
    synth = stages["synth"]["summary"]
    assert synth["stand_in_teacher"] and "stand-in" in synth["teacher"]
    rejected = {r for st in synth["steps"].values() for r in (st["rejected_by_reason"] or {})}
    assert rejected & {"wrong_answer", "low_quality"}, "the stand-in slips on purpose: rejection must have work"
    mixture = stages["sft_data"]["summary"]
    assert mixture["synth_records"] == synth["records"] and 0 < mixture["selected"] <= 24
    sft_stats = read_json(run / "sft" / "data" / "stats.json")
    assert sft_stats["read"]["kept"] == mixture["selected"] and sft_stats["read"]["quarantined"] == 0
    long_cot = stages["long_cot_data"]["summary"]
    assert long_cot["records"] > 0 and long_cot["reference"].endswith("sft/model")
    assert sum(long_cot["solved"].values()) == long_cot["records"]
    assert read_json(run / "long_cot" / "data" / "stats.json")["selection"]["s1"]["selected"] <= 6


def test_the_vlm_is_built_on_the_base_model_and_evaluated_for_table3(finished_run) -> None:
    _, run = finished_run
    stages = read_json(run / "manifest.json")["stages"]
    assert stages["vlm"]["summary"]["lm"].endswith("anneal/model")
    assert [c["stage"] for c in stages["vlm"]["summary"]["curriculum"]] == ["stage1-align", "stage2-vision",
                                                                           "stage3-all"]
    table3 = stages["eval_vl"]["summary"]
    assert table3["mmmu"]["data"] == "stand-in" and table3["mmmu"]["n"] == 6 and table3["mmmu"]["skipped"] == 0
    assert table3["screenspot"]["data"] == "stand-in" and "emulator" in table3["androidworld"]["not_run"]
    graded = [json.loads(line) for line in (run / "eval_vl" / "mmmu" / "samples.jsonl").read_text().splitlines()]
    assert len(graded) == 6 and {g["question_type"] for g in graded} == {"multiple-choice", "open"}
    export = stages["export"]["summary"]
    assert export["model_stage"] == "long_cot" and (run / "export" / "model-f16.gguf").stat().st_size > 1000
    assert (run / "export" / "hf" / "config.json").exists()


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
    for heading in ("Stages and timings", "Corpus", "Curation", "Training", "SFT data synthesis",
                    "InfiR-VL: curriculum", "Export for the edge"):
        assert f"## {heading}" in md
    for number in (1, 2, 6, 3):
        assert f"### Table {number}:" in md
    assert md.index("### Table 1:") < md.index("### Table 2:") < md.index("### Table 6:") < md.index("### Table 3:")
    assert "(paper)" not in md, "toy stand-ins never stand beside the paper's numbers"
    assert md.count("Toy scale") == 4 and "stand-in" in md and "a STAND-IN" in md
    assert "llama-quantize" in md and "Q4_K_M" in md
    html = (run / "report.html").read_text()
    assert "<table>" in html and "loss_curves.png" in html and "curation_funnel.png" in html
    assert "<h3>Table 3: " in html and "<b>small InfiR-VL</b>" in html
    assert (run / "report_assets" / "loss_curves.png").stat().st_size > 1000
    assert (run / "report_assets" / "vlm_loss_curves.png").stat().st_size > 1000


def test_rerun_skips_and_from_reruns_downstream(finished_run) -> None:
    recipe, run = finished_run
    before = read_json(run / "manifest.json")["stages"]
    proc = _infir("run", str(recipe), "--runs-dir", str(run.parent), cwd=run.parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("skipped") == len(ALL_STAGES)
    proc = _infir("run", str(recipe), "--runs-dir", str(run.parent), "--from", "export", cwd=run.parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = read_json(run / "manifest.json")["stages"]
    assert after["eval_vl"]["finished"] == before["eval_vl"]["finished"]
    assert after["export"]["finished"] != before["export"]["finished"] or \
        after["export"]["seconds"] != before["export"]["seconds"]
    proc = _infir("run", str(recipe), "--runs-dir", str(run.parent), "--from", "nope", cwd=run.parent.parent)
    assert proc.returncode == 2 and "not a stage" in proc.stderr


def test_only_never_deletes_the_stages_it_leaves_out(finished_run, tmp_path) -> None:
    """Regression: `--only eval_base` with an upstream change (here pretrain's lr; `--data-dir` did the same)
    deleted corpus ... anneal, models included, without running them, and eval_base then had no model."""
    import shutil

    recipe, run = finished_run
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / run.name)
    before = read_json(runs / run.name / "manifest.json")["stages"]
    proc = _infir("run", str(recipe), "--runs-dir", str(runs), "--only", "eval_base",
                  "--set", "pretrain.optimizer.lr=0.002", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--only keeps its outputs" in proc.stderr
    after = read_json(runs / run.name / "manifest.json")["stages"]
    for stage in ("corpus", "curate", "tokenizer", "pretrain", "anneal"):
        assert after[stage] == before[stage]
    assert (runs / run.name / "anneal" / "model" / "model.safetensors").exists()
    assert after["eval_base"]["finished"] != before["eval_base"]["finished"] or \
        after["eval_base"]["seconds"] != before["eval_base"]["seconds"]
    assert after["eval_base"]["stale_upstream"] == ["pretrain", "anneal"]
    assert after["sft"] == before["sft"]  # after the selected stage, nothing is touched either
    assert "ran with `--only` on the outputs of pretrain, anneal" in (runs / run.name / "report.md").read_text()


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


def test_infir_vl_recipe_runs_on_its_own_given_an_lm_folder(finished_run, tmp_path) -> None:
    """`infir run recipes/infir-vl.yaml` at toy size (an overlay shrinks it): VLM stages 1-3 and Table 3."""
    _, run = finished_run
    repo = Path(__file__).resolve().parents[2]
    mini = {key: PAPER_STAGES["vlm"][key] for key in ("vision", "synth", "stages", "eval", "device", "runtime")}
    overlay = tmp_path / "mini.yaml"
    overlay.write_text(yaml.safe_dump({"name": "vl-mini", "vlm": {**mini, "clean": {"encoder_path": None},
                                                                  "image_cache_size": 64},
                                       "eval_vl": {"standin_questions": 4, "max_new_tokens": 8, "batch_size": 8}}))
    proc = _infir("run", str(repo / "recipes" / "infir-vl.yaml"), "--overlay", str(overlay), "--set",
                  f"vlm.lm={run / 'anneal' / 'model'}", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = read_json(tmp_path / "runs" / "vl-mini" / "manifest.json")
    assert list(manifest["stages"]) == ["vlm", "eval_vl"]
    assert manifest["stages"]["eval_vl"]["summary"]["mmmu"]["n"] == 4
    assert "### Table 3:" in (tmp_path / "runs" / "vl-mini" / "report.md").read_text()
    # without an LM folder the plan is refused before any work
    proc = _infir("run", str(repo / "recipes" / "infir-vl.yaml"), "--overlay", str(overlay), "--runs-dir",
                  str(tmp_path / "runs2"), cwd=tmp_path)
    assert proc.returncode == 2 and "vlm.lm" in proc.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_teacher_that_refuses_connections_stops_the_run_before_any_work(tmp_path) -> None:
    from infir.run import run_recipe

    recipe = tmp_path / "r.yaml"
    url = f"http://127.0.0.1:{_free_port()}/v1"
    recipe.write_text(yaml.safe_dump({**{k: SMALL_RECIPE[k] for k in ("name", "corpus")},
                                      "synth": {"teacher": {"source": url}, "embedded_seeds": 4}}))
    with pytest.raises(SystemExit) as e:
        run_recipe(recipe, runs_dir=tmp_path / "runs")
    assert e.value.code == 2 and not (tmp_path / "runs" / "small" / "corpus").exists()
    for bad in ({"eval_base": {"tasks": ["nope"]}},  # an unknown task
                {"synth": {"teacher": {"source": "scripted"}, "seeds": ["missing/seeds.jsonl"]}},  # no such seeds
                {"synth": {"teacher": {"source": str(tmp_path / "no-model")}, "embedded_seeds": 2}}):  # no folder
        recipe.write_text(yaml.safe_dump({"name": "r", **bad, **{
            k: SMALL_RECIPE[k] for k in ("corpus", "curate", "tokenizer", "pretrain")}}))
        with pytest.raises(SystemExit) as e:
            run_recipe(recipe, runs_dir=tmp_path / "runs")
        assert e.value.code == 2 and not (tmp_path / "runs" / "r" / "corpus").exists(), bad


def test_a_stage_with_no_records_stops_the_run_naming_the_rejections(tmp_path) -> None:
    from infir.run import run_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "norecords", "corpus": SMALL_RECIPE["corpus"],
                                      "synth": {"teacher": {"source": "scripted"}, "embedded_seeds": 6,
                                                "evolve": {"enabled": False}, "respond": {"candidates": 1},
                                                "reject": {"min_chars": 100000}}}))
    with pytest.raises(SystemExit) as e:
        run_recipe(recipe, runs_dir=tmp_path / "runs")
    entry = read_json(tmp_path / "runs" / "norecords" / "manifest.json")["stages"]["synth"]
    assert e.value.code == 1 and entry["status"] == "failed"
    assert "synth: no record passed verification" in entry["error"] and "too_short 6" in entry["error"]
    assert "**Stage synth failed:** synth: no record passed" in (tmp_path / "runs" / "norecords" / "report.md").read_text()
