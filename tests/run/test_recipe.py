"""Recipes are validated before any work: errors name the bad field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infir.run.recipe import RecipeError, load_recipe, parse_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "recipes").glob("*.yaml") if p.name != "tiny-vl.yaml"
                                        and "sft" not in p.name))
def test_shipped_recipes_validate_and_plan(name: str, tmp_path) -> None:
    from infir.run.stages import check_plan

    overrides = [f"vlm.lm={tmp_path}"] if name == "infir-vl.yaml" else []
    recipe = load_recipe(REPO / "recipes" / name, overrides=overrides)
    assert recipe.name
    check_plan(recipe)  # every stage finds the model / outputs it reads


def test_the_paper_recipes_walk_every_stage() -> None:
    from infir.run.stages import STAGES, enabled_stages
    from infir.vlm.config import load_vlm_config

    every = [s.name for s in STAGES]
    for name in ("tiny.yaml", "infir-1b.yaml"):
        assert [s.name for s in enabled_stages(load_recipe(REPO / "recipes" / name))] == every, name
    assert [s.name for s in enabled_stages(load_recipe(REPO / "recipes" / "infir-vl.yaml"))] == ["vlm", "eval_vl"]
    assert load_vlm_config(REPO / "recipes" / "infir-vl.yaml").vision.preset == "so400m-384"  # `infir vlm train`


def test_bad_type_names_the_field_and_expectation() -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "pretrain": {"model": "tiny", "max_steps": 5, "optimizer": {"lr": "fast"}}})
    msg = str(e.value)
    assert "pretrain.optimizer.lr" in msg and "valid number" in msg and "'fast'" in msg


def test_a_moved_setting_names_its_new_place() -> None:
    """Settings that moved into the shared parts get an error naming where they live now."""
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "pretrain": {"model": "tiny", "max_steps": 5, "lr": 3e-3, "log_interval": 2}})
    msg = str(e.value)
    assert "pretrain" in msg and "'lr' is now 'optimizer.lr'" in msg and "'log_interval' is now 'logging.interval'" in msg
    with pytest.raises(RecipeError, match="'warmup_ratio' is now 'schedule.warmup_ratio'"):
        parse_recipe({"name": "x", "sft": {"warmup_ratio": 0.2}})


def test_parts_keep_the_stage_defaults_they_do_not_set() -> None:
    r = parse_recipe({"name": "x", "pretrain": {"max_steps": 5, "optimizer": {"lr": 1e-3}, "schedule": "cosine"},
                      "sft": {"optimizer": {"lr": 1e-5}}})
    assert r.pretrain.optimizer.betas == (0.9, 0.95) and r.pretrain.schedule.kind == "cosine"
    assert r.sft.optimizer.lr == 1e-5 and r.sft.optimizer.betas == (0.9, 0.999)  # SFT's default, not pretrain's
    assert r.sft.schedule.warmup(100) == 10 and r.sft.optimizer.weight_decay == 0.0
    assert r.pretrain.schedule.warmup(100) == 2000


def test_overlays_and_set_apply_in_order(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "big", "pretrain": {"model": "tiny", "max_steps": 1000,
                                                                  "optimizer": {"lr": 1e-3}}}))
    mini = tmp_path / "mini.yaml"
    mini.write_text(yaml.safe_dump({"pretrain": {"max_steps": 10, "seq_len": 64}}))
    r = load_recipe(recipe, overlays=[mini], overrides=["pretrain.optimizer.lr=5e-3", "name=small"])
    assert (r.name, r.pretrain.max_steps, r.pretrain.seq_len, r.pretrain.optimizer.lr) == ("small", 10, 64, 5e-3)
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe(recipe, overrides=["pretrain.max_steps"])
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(recipe, overlays=[tmp_path / "nope.yaml"])


def test_set_works_on_every_command_that_takes_a_config(tmp_path) -> None:
    """One loader: the same `--set` and the same error (the field named; exit code 2 from the CLI) everywhere."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from infir.cli import app
    from infir.utils.config import ConfigError

    runner = CliRunner()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "hello world"}\n')
    calls = {
        "data curate": ["data", "curate", "--input", str(corpus), "--output", str(tmp_path / "o1")],
        "train pretrain": ["train", "pretrain", "--data-dir", str(tmp_path), "--output", str(tmp_path / "o2")],
        "train sft": ["train", "sft", "--base-model", str(tmp_path), "--data", str(corpus), "--output",
                      str(tmp_path / "o3")],
        "synth": ["synth", "--seeds", str(corpus), "--teacher", "http://127.0.0.1:9/v1", "--output", str(tmp_path / "o4")],
        "vlm data": ["vlm", "data", str(REPO / "recipes" / "tiny-vl.yaml"), "--output", str(tmp_path / "o5")],
    }
    bad = {"data curate": "minhash.bands=many", "train pretrain": "optimizer.lr=fast", "train sft": "optimizer.lr=fast",
           "synth": "respond.candidates=many", "vlm data": "synth.train_screens=lots"}
    for name, args in calls.items():
        result = runner.invoke(app, [*args, "--set", bad[name]])
        assert isinstance(result.exception, ConfigError), (name, result.output, result.exception)
        assert bad[name].split("=")[0] in str(result.exception), (name, result.exception)
    result = runner.invoke(app, ["run", str(REPO / "recipes" / "tiny.yaml"), "--set", "pretrain.optimizer.lr=fast",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    proc = subprocess.run([sys.executable, "-m", "infir.cli", *calls["train pretrain"], "--set", "optimizer.lr=fast"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "optimizer.lr" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "tokenizer": {"vocab_size": 1000, "vocabsize": 3}})
    assert "tokenizer.vocabsize" in str(e.value) and "Extra inputs are not permitted" in str(e.value)


def test_unknown_stage_and_bad_name_are_rejected() -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "a b", "pretrian": {}})
    assert "pretrian" in str(e.value) and "name" in str(e.value)


def test_not_yaml_or_not_a_mapping(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("- a list\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(bad)


def test_cli_rejects_invalid_recipe_before_any_work(tmp_path) -> None:
    import subprocess
    import sys

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "bad", "tokenizer": {"vocab_size": -5}}))
    proc = subprocess.run([sys.executable, "-m", "infir.cli", "run", str(recipe), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "tokenizer.vocab_size" in proc.stderr
    assert not (tmp_path / "runs").exists()
