"""`infir train tokenize` and the YAML config loading behind `infir train pretrain|anneal`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from infir.train.commands import app, load_train_config

REPO = Path(__file__).resolve().parents[2]


def test_tokenize_command_writes_a_source_and_quarantines_bad_lines(tmp_path, tokenizer_dir) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": "the cat sat"}) + "\n" + json.dumps({"text": 3}) + "\n")
    result = CliRunner().invoke(app, ["tokenize", str(corpus), "--tokenizer", str(tokenizer_dir),
                                      "--output", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    from infir.model.tokenizer import load_tokenizer

    n = len(load_tokenizer(tokenizer_dir)("the cat sat", add_special_tokens=False)["input_ids"]) + 2  # BOS, EOS
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"documents": 1, "tokens": n, "quarantined": 1}
    assert (tmp_path / "src" / "index.json").exists() and (tmp_path / "src" / "quarantine.jsonl").exists()


def test_recipe_sections_load_with_the_papers_settings() -> None:
    pretrain = load_train_config(REPO / "recipes" / "infir-1b.yaml", "pretrain", [])
    assert (pretrain.optimizer.lr, pretrain.global_batch_size, pretrain.seq_len) == (1.4e-3, 2048, 4096)
    assert pretrain.max_tokens == 900_000_000_000 and pretrain.eval.discard_fraction == 0.2
    anneal = load_train_config(REPO / "recipes" / "infir-1b.yaml", "anneal", ["max_steps=7", "eval.max_items=5"])
    assert anneal.max_tokens == 40_000_000_000 and anneal.schedule.kind == "decay"
    assert anneal.total_steps() == 7 and anneal.eval.max_items == 5
    small = load_train_config(REPO / "recipes" / "gpu-small.yaml", "pretrain", [])
    assert small.model == "tiny"
