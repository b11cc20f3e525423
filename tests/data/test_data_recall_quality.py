"""fastText reasoning recall ranks held-out math above web text; quality scoring and code analysis."""

from __future__ import annotations

import gzip
import json

import pytest

from infir.data.quality import python_static_analysis, tree_sitter_parses
from infir.data.recall import auc, positive_prob, train_classifier


def test_math_recall_classifier_auc(shared_data, tmp_path):
    pytest.importorskip("fasttext")
    math = [json.loads(line) for line in gzip.open(shared_data / "math" / "train.jsonl.gz", "rt")]
    math_texts = [m["problem"] + "\n" + m["solution"] for m in math[::15]]  # 500, every subject
    web = [
        json.loads(line)["text"] for line in open(shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl")
    ]
    held_math = [json.loads(line)["problem"] for line in open(shared_data / "math" / "math500_test.jsonl")][
        :150
    ]
    model = train_classifier(math_texts[:350], web[:200], tmp_path / "math.bin", epochs=10, seed=0)
    held_web = web[200:]
    score = auc(positive_prob(model, held_math), positive_prob(model, held_web))
    print(
        f"math recall classifier AUC on {len(held_math)} held-out MATH problems vs {len(held_web)} C4 docs: {score:.3f}"
    )
    assert score >= 0.95


def test_code_static_analysis():
    assert python_static_analysis("import os\nx = 1\n") == (True, 1)  # unused import
    assert python_static_analysis("def f(:\n")[0] is False
    if tree_sitter_parses("let x = 1;", "javascript") is not None:
        assert tree_sitter_parses("function f() { return 1 }", "javascript") is True
        assert tree_sitter_parses("function f( { return 1 }", "javascript") is False


def test_pipeline_recall_iterations_and_flag_mode(shared_data, tmp_path):
    pytest.importorskip("fasttext")
    from infir.data.config import CurateConfig
    from infir.data.pipeline import run_curate
    from infir.utils.io import read_jsonl, write_jsonl

    math = [json.loads(line) for line in gzip.open(shared_data / "math" / "train.jsonl.gz", "rt")]
    web = [
        json.loads(line)["text"] for line in open(shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl")
    ]
    gsm = json.loads(open(shared_data / "gsm8k" / "test.jsonl").readline())
    write_jsonl(tmp_path / "seeds.jsonl", [{"text": m["problem"] + "\n" + m["solution"]} for m in math[::100]])
    rows = [{"id": f"web{i}", "text": t} for i, t in enumerate(web[:150])]
    rows += [
        {"id": f"math{i}", "text": m["problem"] + "\n" + m["solution"]}
        for i, m in enumerate(math[1::50][:30])
    ]
    worked = "\n".join(m["problem"] + "\n" + m["solution"] for m in math[7:10])  # a math page quoting GSM8K
    write_jsonl(tmp_path / "in" / "crawl.jsonl.gz", rows)
    # a curated math input (not recalled from: recall scores web pages) with a page quoting GSM8K
    write_jsonl(tmp_path / "owm.jsonl", [{"id": "leak", "text": worked + "\n" + gsm["question"]}])
    cfg = CurateConfig.model_validate(
        {
            "heuristics": {"enabled": False},
            "recall": {"enabled": True, "seeds": {"math": [str(tmp_path / "seeds.jsonl")]}, "iterations": 2},
            "decontam": {"mode": "flag", "benchmarks": ["gsm8k"]},
        }
    )
    from infir.data.config import InputSpec

    inputs = [tmp_path / "in", InputSpec(path=str(tmp_path / "owm.jsonl"), domain="math", source="owm")]
    stats = run_curate(cfg, inputs, tmp_path / "out", benchmarks_dir=shared_data)
    assert [it["iteration"] for it in stats["recall"]["math"]] == [0, 1]
    assert stats["recall"]["math"][1]["seeds"] >= stats["recall"]["math"][0]["seeds"]
    kept = {r["id"]: r for p in (tmp_path / "out").glob("*.jsonl.gz") for r in read_jsonl(p)}
    math_kept = sum(k.startswith("math") for k in kept)
    web_kept = sum(k.startswith("web") for k in kept)
    print(f"recall kept {math_kept}/30 math pages and {web_kept}/150 web pages")
    assert math_kept >= 20 and web_kept <= 10  # sampling seeds 0-3: 22-25 math, 0-2 web
    assert all(kept[k]["metadata"]["domain"] == "math" for k in kept if k.startswith("math"))
    assert "heldout_recall" in stats["recall"]["math"][0]
    rejects = {r["id"]: r for p in (tmp_path / "out" / "rejects").glob("*.jsonl.gz") for r in read_jsonl(p)}
    assert "leak" in kept, rejects.get("leak", {}).get("reason")
    assert kept["leak"]["metadata"]["source_name"] == "owm" and "recall_scores" not in kept["leak"]["metadata"]
    assert kept["leak"]["metadata"]["contamination"]["benchmark"] == "gsm8k"  # flagged, not dropped
    assert stats["input_records"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
