"""Curriculum stages freeze what they should and learn; run_vlm goes end to end and resumes by stage."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from typer.testing import CliRunner

from infir.vlm.config import StageConfig, VLMConfig, load_vlm_config
from infir.vlm.dataset import ImageCache, encode_samples
from infir.vlm.model import load_vlm
from infir.vlm.processor import ConversationEncoder
from infir.vlm.train import train_stage

REPO = Path(__file__).resolve().parents[2]


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_stage_tune_types_freeze_and_training_lowers_loss(tiny_vlm, tiny_tokenizer, tmp_path):
    from PIL import Image

    paths = []
    for i, c in enumerate([(255, 0, 0), (0, 0, 255)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (32, 32), c).save(paths[-1])
    samples = [{"image": paths[0], "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                                     {"from": "gpt", "value": "A red square."}]},
               {"image": paths[1], "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                                     {"from": "gpt", "value": "A blue circle."}]}]
    enc = ConversationEncoder(tiny_tokenizer, tiny_vlm.image_token_id, tiny_vlm.num_image_tokens)
    examples, bad = encode_samples(samples * 4, enc)
    assert not bad
    cache = ImageCache(tiny_vlm.preprocessing)
    pad = tiny_tokenizer.pad_token_id
    before = {n: _snapshot(m) for n, m in tiny_vlm.components().items()}
    stage1 = StageConfig(name="s1", vision="frozen", projector="full", lm="frozen", batch_size=4, optimizer={"lr": 1e-2},
                         epochs=2)
    s1 = train_stage(tiny_vlm, examples, stage1, cache, pad, torch.device("cpu"))
    assert s1["trainable"]["vision"] == 0 and s1["trainable"]["lm"] == 0 and s1["trainable"]["projector"] > 0
    assert _changed(before["projector"], tiny_vlm.projector)
    assert not _changed(before["vision"], tiny_vlm.vision) and not _changed(before["lm"], tiny_vlm.lm)
    stage3 = StageConfig(name="s3", vision="full", projector="full", lm="full", batch_size=4, grad_accum=2,
                         optimizer={"lr": 1e-2}, epochs=30, schedule={"warmup_ratio": 0.0})
    s3 = train_stage(tiny_vlm, examples, stage3, cache, pad, torch.device("cpu"))
    assert _changed(before["vision"], tiny_vlm.vision) and _changed(before["lm"], tiny_vlm.lm)
    assert s3["steps"] == 30 and s3["loss_last"] < 0.5 * s3["loss_first"]
    assert all(not p.requires_grad for p in tiny_vlm.parameters())


def _micro_config(tmp_path: Path) -> Path:
    doc = yaml.safe_load((REPO / "recipes" / "tiny-vl.yaml").read_text())
    vlm = doc["vlm"]
    vlm["vision"].update(image_size=32, patch_size=16, hidden_size=32, num_layers=1, intermediate_size=64)
    vlm["synth"].update(train_screens=12, ocr_images=6, eval_screens=3, render_width=64, single_element_screens=4)
    for stage in vlm["stages"]:
        stage.update(num_samples=8, batch_size=4)
    vlm["stages"][2]["eval_every"] = 1
    vlm["eval"].update(trajectory_episodes=2, max_new_tokens=24, trajectory_max_new_tokens=24,
                       screenspot_dir=None)
    path = tmp_path / "micro-vl.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_cli_runs_all_three_stages_evaluates_and_resumes(tmp_path):
    from infir.cli import app

    cfg_path = _micro_config(tmp_path)
    cfg = load_vlm_config(cfg_path)
    assert [s.name for s in cfg.stages] == ["stage1-align", "stage2-vision", "stage3-all"]
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["vlm", "train", str(cfg_path), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "held-out synthetic grounding accuracy" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == [s.name for s in cfg.stages]
    assert [s["trainable"]["lm"] > 0 for s in metrics["stages"]] == [False, False, True]
    assert [s["trainable"]["vision"] > 0 for s in metrics["stages"]] == [False, True, True]
    g = metrics["synthetic_grounding"]
    assert g["n"] == sum(1 for _ in json.loads((out / "data" / "heldout_grounding.json").read_text()))
    assert 0 < g["chance_random_click"] < g["chance_random_element"] < 1
    assert "step_accuracy" in metrics["synthetic_steps"]
    # eval_every: held-out grounding after each stage-3 step; the last point is the final model's score
    curve = metrics["stages"][2]["eval_curve"]
    assert [step for step, _ in curve] == [1, 2] and curve[-1][1] == g["accuracy"]
    assert "eval_curve" not in metrics["stages"][0]
    assert [len(s["loss_curve"]) for s in metrics["stages"]] == [s["steps"] for s in metrics["stages"]]
    assert metrics["training_plot"] == "training.png" and (out / "training.png").stat().st_size > 0
    model, tok = load_vlm(out / "model")
    assert model.num_image_tokens == 4
    assert len(model.lm.model.layers) == cfg.toy_lm.num_hidden_layers == 4  # the recipe's toy LM depth
    # Resume: a rerun finds every stage done and retrains nothing.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*/projector.safetensors")}
    result = runner.invoke(app, ["vlm", "train", str(cfg_path), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*/projector.safetensors")}
    again = json.loads((out / "metrics.json").read_text())
    assert again["stages"] == metrics["stages"]


def test_paper_recipe_parses_with_the_paper_curriculum():
    cfg = load_vlm_config(REPO / "recipes" / "infir-vl.yaml")
    assert cfg.vision.preset == "so400m-384" and cfg.clean.threshold == 0.5
    assert [(s.vision, s.projector, s.lm) for s in cfg.stages] == [
        ("frozen", "full", "frozen"), ("full", "full", "frozen"), ("full", "full", "full")]
    assert "caption" in cfg.stages[0].data and "ocr" not in cfg.stages[0].data and "trajectory" in cfg.stages[2].data
    assert [s.optimizer.lr for s in VLMConfig().stages] == [s.optimizer.lr for s in cfg.stages]
