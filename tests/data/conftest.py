"""The miniature paper layout, built once per session and shared: the corpus recipe's tests
(test_corpus_recipe.py) and the whole-recipe runs (test_paper_recipes.py) continue the same run directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from infir.utils.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "recipes" / "mini" / "infir-1b.mini.yaml"


def run_mini_recipe(root: Path, shared: Path, only: str | None = None) -> Path:
    """recipes/infir-1b.yaml through its miniature overlay, from `root` (the recipe's paths are relative to the
    working directory, as for a user)."""
    from infir.run.runner import run_recipe

    cwd = Path.cwd()
    os.chdir(root)
    try:
        return run_recipe(REPO / "recipes" / "infir-1b.yaml", runs_dir=root / "runs", data_dir=shared, only=only,
                          overlays=[OVERLAY])
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory, shared_data) -> dict[str, Any]:
    """The miniature layout (corpus, annealing sources, SFT sets) and its corpus -> curate -> tokenizer run."""
    pytest.importorskip("fasttext")
    from tests.data.mini_layout import build_mini_layout

    root = tmp_path_factory.mktemp("mini-corpus")
    layout = build_mini_layout(root, shared_data)
    run_dir = run_mini_recipe(root, shared_data, only="corpus,curate,tokenizer")
    kept = [r for p in sorted((run_dir / "curate").glob("*.jsonl.gz")) for r in read_jsonl(p)]
    rejects = [r for p in sorted((run_dir / "curate" / "rejects").glob("*.jsonl.gz")) for r in read_jsonl(p)]
    return {"root": root, "run": run_dir, "layout": layout, "kept": kept, "rejects": rejects,
            "stats": read_json(run_dir / "curate" / "stats.json")}
