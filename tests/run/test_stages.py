"""Stages declared as data: what each reads and produces is checked before any work."""

from __future__ import annotations

import pytest

from infir.run.recipe import RecipeError, parse_recipe
from infir.run.stages import STAGES, check_plan, enabled_stages, model_stage

TRAIN = {"model": "micro", "max_steps": 2}


def test_every_spec_names_a_recipe_section_and_a_report_kind() -> None:
    from infir.run.recipe import Recipe
    from infir.run.report import SECTIONS

    for st in STAGES:
        assert st.recipe_section in Recipe.model_fields, st.name
        assert st.report is None or st.report in SECTIONS, st.name
    assert [s.name for s in STAGES if s.produces == "model"] == ["pretrain", "anneal", "sft", "long_cot"]


def test_a_stage_reads_the_latest_model_it_may_take() -> None:
    recipe = parse_recipe({"name": "r", "curate": {}, "tokenizer": {}, "pretrain": TRAIN, "anneal": TRAIN,
                           "sft": {}, "eval": {}})
    check_plan(recipe)
    assert model_stage(recipe, "anneal") == "pretrain" and model_stage(recipe, "sft") == "anneal"
    assert model_stage(recipe, "eval") == "sft"
    assert [s.name for s in enabled_stages(recipe)] == ["corpus", "curate", "tokenizer", "pretrain", "anneal", "sft",
                                                        "eval"]


def test_a_stage_without_its_inputs_is_refused_before_any_work() -> None:
    with pytest.raises(RecipeError, match="stage eval reads a model, but no earlier stage"):
        check_plan(parse_recipe({"name": "r", "eval": {}}))
    with pytest.raises(RecipeError, match="stage anneal reads a model.*add pretrain before it"):
        check_plan(parse_recipe({"name": "r", "curate": {}, "tokenizer": {}, "anneal": TRAIN}))
    with pytest.raises(RecipeError, match="stage tokenizer reads the output of stage curate, which this recipe "
                                          "does not run"):
        check_plan(parse_recipe({"name": "r", "tokenizer": {}}))
    # a stage that names its own starting model needs no earlier model stage
    check_plan(parse_recipe({"name": "r", "curate": {}, "tokenizer": {}, "anneal": {**TRAIN, "init_from": "m/"}}))


def test_run_refuses_an_impossible_plan_with_exit_code_2(tmp_path) -> None:
    import yaml

    from infir.run import run_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "eval": {"tasks": ["gsm8k"]}}))
    with pytest.raises(SystemExit) as e:
        run_recipe(recipe, runs_dir=tmp_path / "runs")
    assert e.value.code == 2 and not (tmp_path / "runs" / "r" / "corpus").exists()
