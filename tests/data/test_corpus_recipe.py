"""The paper's pretraining recipe (recipes/infir-1b.yaml) through its miniature overlay on a corpus laid out
exactly as its corpus.inputs say, one small file per source family of Table 7 in its release format."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infir.utils.io import read_json, read_jsonl
from tests.data.mini_layout import build_mini_layout

REPO = Path(__file__).resolve().parents[2]


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """The overlay merged over the recipe: mappings key by key, anything else replaced (stand-in for the
    lead's `load_recipe(path, overlays=[...])` until it lands)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def mini_recipe(path: Path) -> Path:
    recipe = yaml.safe_load((REPO / "recipes" / "infir-1b.yaml").read_text())
    overlay = yaml.safe_load((REPO / "recipes" / "mini" / "infir-1b.mini.yaml").read_text())
    merged = deep_merge(recipe, overlay)
    # the overlay changes only sizes and local paths: the inputs, steps and thresholds are the paper recipe's
    assert merged["corpus"] == recipe["corpus"] and merged["curate"]["steps"] == recipe["curate"]["steps"]
    path.write_text(yaml.safe_dump(merged))
    return path


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory, shared_data) -> dict[str, Any]:
    pytest.importorskip("fasttext")
    from infir.run.runner import run_recipe

    root = tmp_path_factory.mktemp("mini-corpus")
    layout = build_mini_layout(root, shared_data)
    recipe = mini_recipe(root / "infir-1b-mini.yaml")
    cwd = Path.cwd()
    import os

    os.chdir(root)  # the recipe's paths are relative to the working directory, as for a user
    try:
        run_dir = run_recipe(recipe, runs_dir=root / "runs", data_dir=shared_data, only="corpus,curate,tokenizer")
    finally:
        os.chdir(cwd)
    kept = [r for p in sorted((run_dir / "curate").glob("*.jsonl.gz")) for r in read_jsonl(p)]
    rejects = [r for p in sorted((run_dir / "curate" / "rejects").glob("*.jsonl.gz")) for r in read_jsonl(p)]
    return {"root": root, "run": run_dir, "layout": layout, "kept": kept, "rejects": rejects,
            "stats": read_json(run_dir / "curate" / "stats.json")}


def _url(r: dict) -> str | None:
    return r.get("metadata", {}).get("url")


def test_every_source_is_read_in_its_format_and_routed_to_its_domain(mini_run) -> None:
    stats = mini_run["stats"]
    domains = stats["domains"]
    assert set(domains) == {"web", "math", "code", "knowledge", "wiki", "instruct"}
    for d, v in domains.items():
        assert v["input"] == v["kept"] + sum(v["dropped"].values()) + v["quarantined"], d
        assert v["input"] > 0 and v["assumed"] == 0, d
    assert stats["input_records"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
    names = {r["metadata"]["source_name"] for r in mini_run["kept"]}
    assert {"fineweb-edu", "dclm", "infimm-webmath", "open-web-math", "mathcode-pile", "proof-pile-2", "finemath",
            "the-stack-v2", "starcoderdata", "arxiv", "stackexchange", "pes2o", "wikipedia", "flan",
            "infinity-instruct"} <= names
    for r in mini_run["kept"]:  # the input path as the recipe names it (relative to where the run started)
        assert (mini_run["root"] / r["metadata"]["input_path"]).is_file() and r["metadata"]["source_name"]
    instruct = [r for r in mini_run["kept"] if r["metadata"]["source_name"] == "infinity-instruct"]
    assert len(instruct) >= 80 and all("\n\n" in r["text"] for r in instruct)  # chats rendered as text


def test_clean_code_and_math_survive_their_domain_filters(mini_run) -> None:
    layout, kept, rejects = mini_run["layout"], mini_run["kept"], mini_run["rejects"]
    why = {r["text"]: r.get("reason") for r in rejects if "text" in r}
    step = {r["text"]: r.get("step") for r in rejects if "text" in r}
    texts = {r["text"] for r in kept}
    domain_steps = {"math": {"math_colon", "quality_math"},
                    "code": {"code_language", "code_rules", "code_analysis"}}
    for kind, domain in (("code_clean", "code"), ("math_clean", "math")):
        docs = layout[kind]
        survived = sum(step.get(t) not in domain_steps[domain] for t in docs) / len(docs)
        kept_share = sum(t in texts for t in docs) / len(docs)
        print(f"{kind}: {survived:.2%} of {len(docs)} pass the {domain} filters; {kept_share:.2%} kept after "
              f"dedup and decontamination ({sorted(why[t] for t in docs if t in why)})")
        assert survived >= 0.8 and kept_share >= 0.6
    assert {why[t] for t in layout["math_dirty"]} == {"math_ends_with_colon"}
    assert [why.get(t) for t in layout["code_dirty"]] == [
        "javascript_minified", "java_no_type_declaration", "code_autogenerated", "code_language_not_allowed"]
    langs = {r["metadata"].get("language_code") for r in kept if r["metadata"]["domain"] == "code"}
    assert langs == {"python", "javascript", "java", "c"}
    math_kept = [r for r in kept if r["text"] in set(layout["math_clean"])]
    assert all(r["metadata"]["quality_scorer"] == "math" and r["metadata"]["quality_int_score"] >= 3
               for r in math_kept)


def test_web_pages_get_finewebs_decisions(mini_run) -> None:
    from infir.data.heuristics import fineweb_filters

    urls = set(mini_run["layout"]["web"])
    seen = [r for r in mini_run["kept"] + mini_run["rejects"] if _url(r) in urls]
    at_heuristics = [r for r in seen if r.get("step") != "langid"]
    assert len(at_heuristics) >= 200
    for r in at_heuristics:  # rejects keep the text as read; later steps see the text after C4's line edits
        if r.get("step") == "heuristics":
            assert fineweb_filters(r["text"])[0] == r["reason"]
        else:
            assert r.get("step") != "read"  # kept, or dropped after the heuristics step
    dropped = sum(r.get("step") == "heuristics" for r in at_heuristics)
    assert 0.05 < dropped / len(at_heuristics) < 0.95


def test_recalled_pages_carry_their_domain_into_the_tokenised_shards(mini_run) -> None:
    from infir.run.stages import tokenize_by_domain

    kept, run = mini_run["kept"], mini_run["run"]
    recalled = [r for r in kept if r["metadata"].get("recalled_from") == "web"]
    as_math = [r for r in recalled if r["metadata"]["domain"] == "math"]
    assert {_url(r) for r in as_math} & set(mini_run["layout"]["web_math"])
    # a recalled page went through the math steps: the colon rule before dedup, the math scorer after it
    web_funnel = {f["step"] for f in mini_run["stats"]["domains"]["web"]["funnel"]}
    assert {"langid", "heuristics", "recall", "minhash", "math_colon", "quality_math", "decontam"} <= web_funnel
    assert all(r["metadata"]["quality_scorer"] == "math" for r in as_math)
    assert mini_run["stats"]["domains"]["web"]["dropped"].get("not_recalled", 0) > 0
    rounds = mini_run["stats"]["recall"]
    assert set(rounds) == {"math", "code", "other"} and all(len(v) == 2 for v in rounds.values())
    assert all("heldout_recall" in r for v in rounds.values() for r in v)
    counts = tokenize_by_domain(iter(kept), run / "tokenizer", mini_run["root"] / "tokens")
    index = json.loads((mini_run["root"] / "tokens" / "math" / "index.json").read_text())
    n_math = sum(r["metadata"]["domain"] == "math" for r in kept)
    assert counts["math"] == index["documents"] == n_math and n_math > len(as_math) > 0


def test_report_shows_the_per_domain_funnel(mini_run) -> None:
    md = (mini_run["run"] / "report.md").read_text()
    assert "### Curation by domain" in md
    for d in ("web", "math", "code", "knowledge", "wiki", "instruct"):
        assert f"| {d} |" in md
    assert "| web | recall |" in md and "held-out recall" in md
    assert (mini_run["run"] / "report_assets" / "curation_funnel_by_domain.png").stat().st_size > 5000
