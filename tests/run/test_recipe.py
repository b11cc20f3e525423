"""Recipes are validated before any work: errors name the bad field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infir.run.recipe import RecipeError, load_recipe, parse_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "recipes").glob("*.yaml") if "vl" not in p.name
                                        and "sft" not in p.name))
def test_shipped_recipes_validate(name: str) -> None:
    recipe = load_recipe(REPO / "recipes" / name)
    assert recipe.name


def test_bad_type_names_the_field_and_expectation() -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "pretrain": {"model": "tiny", "max_steps": 5, "lr": "fast"}})
    msg = str(e.value)
    assert "pretrain.lr" in msg and "valid number" in msg and "'fast'" in msg


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
