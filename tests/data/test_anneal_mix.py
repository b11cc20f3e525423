"""`infir data anneal`: Table 8's mixture by shares of tokens (code at its pretraining share, web pages only where
recall moved them to math or code), small sources repeated up to a cap, bad input refused before any work, and a
run killed mid-mixture resumed with nothing duplicated or lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from infir.data.anneal import AnnealDataConfig, build_anneal_mix, plan_mixture, select_exact
from infir.utils.io import read_json, write_jsonl

REPO = Path(__file__).resolve().parents[2]
WORDS = ("prime sum angle proof integer function loop array graph tree theorem lemma vector matrix area volume "
         "string parse compile index query paper study result method wiki history city river science").split()


def _text(rng: random.Random, tag: str, n: int) -> str:
    return f"{tag}: " + " ".join(rng.choice(WORDS) for _ in range(n)) + "."


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A curated corpus (as `infir data curate` writes it), an APPS file, an `infir synth` output, a tokenizer."""
    from infir.model.tokenizer import save_tokenizer, train_bpe_tokenizer

    root = tmp_path_factory.mktemp("anneal")
    rng = random.Random(0)
    rows = []

    def add(tag: str, domain: str, source: str, n: int, recalled_from: str | None = None) -> None:
        for _ in range(n):
            meta = {"domain": domain, "source_name": source}
            if recalled_from:
                meta["recalled_from"] = recalled_from
            rows.append({"id": f"{tag}-{len(rows)}", "text": _text(rng, f"{tag}-{len(rows)}", rng.randint(20, 90)),
                         "source": source, "metadata": meta})

    add("math", "math", "open-web-math", 120)
    add("code", "code", "the-stack-v2", 100)
    add("se", "knowledge", "stackexchange", 60)
    add("arxiv", "knowledge", "arxiv", 40)  # not selected by any source
    add("wiki", "wiki", "wikipedia", 50)
    add("webmath", "math", "fineweb-edu", 15, recalled_from="web")  # §2.2 keeps these
    add("webcode", "code", "fineweb-edu", 10, recalled_from="web")
    add("webother", "other", "fineweb-edu", 20, recalled_from="web")  # ... and removes these
    add("web", "web", "dclm", 30)
    rng.shuffle(rows)
    write_jsonl(root / "curated" / "000-00000-a.jsonl.gz", rows[:250])
    write_jsonl(root / "curated" / "000-00001-b.jsonl.gz", rows[250:])
    (root / "curated" / "stats.json").write_text("{}")
    apps = [{"problem_id": k, "question": _text(rng, f"apps-{k}", 15),
             "solutions": json.dumps([f"print({k})\n"]), "input_output": "{}", "difficulty": "introductory",
             "url": "u", "starter_code": ""} for k in range(12)]
    write_jsonl(root / "apps" / "train.jsonl", apps)
    synth = [{"id": f"s{k}", "messages": [{"role": "user", "content": _text(rng, f"synth-q{k}", 10)},
                                          {"role": "assistant", "content": _text(rng, f"synth-a{k}", 25)}],
              "teacher": "t", "domain": "general", "scores": {}, "labels": {},
              "verification": {"candidates": 2, "passed": 1, "chosen": 0}, "provenance": {"source": "x", "index": k}}
             for k in range(8)]
    write_jsonl(root / "synth" / "sft.jsonl", synth)
    (root / "synth" / "stats.json").write_text("{}")
    write_jsonl(root / "synth" / "rejected.jsonl", [{"step": "04_verify", "reason": "wrong_answer"}])
    tok = save_tokenizer(train_bpe_tokenizer([r["text"] for r in rows] + [a["question"] for a in apps], 600),
                         root / "tok")
    return {"root": root, "corpus": root / "curated", "tok": tok, "rows": rows}


def _cfg(world: dict, **over) -> AnnealDataConfig:
    root = world["root"]
    data = {"sources": [
        {"name": "math", "corpus": {"domains": ["math"]}, "weight": 3},
        {"name": "code", "corpus": {"domains": ["code"]}},
        {"name": "knowledge", "corpus": {"sources": ["stackexchange"]}, "weight": 1},
        {"name": "wiki", "corpus": {"domains": ["wiki"]}, "weight": 1},
        {"name": "apps", "inputs": [{"path": str(root / "apps" / "train.jsonl"), "domain": "code"}], "weight": 0.5},
        {"name": "synthetic", "synth": [str(root / "synth")], "weight": 0.5},
    ], **over}
    return AnnealDataConfig.model_validate(data)


PRETRAIN = {"code": 0.25, "math": 0.2, "web": 0.4, "knowledge": 0.1, "wiki": 0.05}


def documents(folder: Path, tokenizer) -> list[str]:
    """The documents of a token source ([BOS] tokens EOS, back to back), decoded."""
    index = read_json(folder / "index.json")
    ids = np.concatenate([np.load(folder / s["file"]) for s in index["shards"]]) if index["shards"] else []
    docs, start = [], 0
    for end in np.flatnonzero(np.asarray(ids) == index["eos_token_id"]):
        body = ids[start + (index["bos_token_id"] is not None):end]
        docs.append(tokenizer.decode([int(t) for t in body]))
        start = end + 1
    return docs


@pytest.fixture(scope="module")
def built(world) -> dict:
    from infir.model.tokenizer import load_tokenizer

    out = world["root"] / "mix"
    stats = build_anneal_mix(_cfg(world, tokens=12000), out, world["tok"], corpus_dir=world["corpus"],
                             pretrain=PRETRAIN)
    tok = load_tokenizer(world["tok"])
    docs = {r["source"]: documents(out / "tokens" / r["source"], tok) for r in stats["sources"]}
    return {"out": out, "stats": stats, "docs": docs}


def test_every_share_is_within_2pp_and_code_keeps_its_pretraining_share(built) -> None:
    rows = {r["source"]: r for r in built["stats"]["sources"]}
    assert rows["code"]["share_from"] == "pretraining share" and rows["code"]["configured_share"] == 0.25
    assert rows["math"]["configured_share"] == pytest.approx(0.75 * 3 / 6)  # weights share what code leaves
    total = built["stats"]["tokens"]
    assert abs(total - 12000) < 300
    for r in rows.values():
        assert abs(r["share"] - r["configured_share"]) <= 0.02, r
        assert r["tokens"] == read_json(built["out"] / "tokens" / r["source"] / "index.json")["tokens"]
    assert not any(r["capped"] for r in rows.values())


def test_web_pages_only_where_recall_moved_them_to_math_or_code(built, world) -> None:
    docs = built["docs"]
    tags = {d.split(":")[0].rsplit("-", 1)[0] for source in docs.values() for d in source}
    assert {"webmath", "webcode"} <= tags and not tags & {"webother", "web", "arxiv"}
    stats = built["stats"]
    assert stats["web_pages_removed"] == 50 and stats["web_pages_kept_as"] == {"math": 15, "code": 10}
    by_id = {r["text"]: r for r in world["rows"]}
    for source in ("math", "code", "knowledge", "wiki"):  # a document goes to the first source that selects it
        for d in docs[source]:
            meta = by_id[d]["metadata"]
            assert {"math": meta["domain"] == "math", "code": meta["domain"] == "code",
                    "knowledge": meta["source_name"] == "stackexchange", "wiki": meta["domain"] == "wiki"}[source]


def test_documents_are_whole_subsampled_or_repeated_never_cut(built, world) -> None:
    texts = {r["text"] for r in world["rows"]}
    rows = {r["source"]: r for r in built["stats"]["sources"]}
    for source in ("math", "code", "knowledge", "wiki"):
        docs = built["docs"][source]
        assert set(docs) <= texts and len(docs) == rows[source]["documents"]
        assert len(set(docs)) == rows[source]["unique_documents"]
    synth = built["docs"]["synthetic"]  # small: repeated, epoch by epoch (never back to back)
    assert rows["synthetic"]["repeats"] > 1 and len(set(synth)) == 8
    assert all(a != b for a, b in zip(synth, synth[1:], strict=False))
    assert all(s.startswith("synth-q") and "\n\nsynth-a" in s for s in synth)  # chats rendered as text


def test_a_source_too_small_for_its_share_is_capped_and_the_report_says_so(world, tmp_path) -> None:
    stats = build_anneal_mix(_cfg(world, tokens=40000, max_repeats=2), tmp_path / "mix", world["tok"],
                             corpus_dir=world["corpus"], pretrain=PRETRAIN)
    rows = {r["source"]: r for r in stats["sources"]}
    capped = {n for n, r in rows.items() if r["capped"]}
    assert {"apps", "synthetic"} <= capped
    for n in capped:
        assert rows[n]["repeats"] == pytest.approx(2.0) and "capped at x2" in rows[n]["note"]
        assert any(note.startswith(f"{n}: too small") for note in stats["notes"])
    for n, r in rows.items():
        if n not in capped:  # they take what the capped ones lack, in proportion: planned, then within 2pp
            assert r["planned_share"] > r["configured_share"] and "capped source" in r["note"]
            assert abs(r["share"] - r["planned_share"]) <= 0.02
    assert abs(stats["tokens"] - 40000) < 400  # the size asked for holds


def test_without_a_size_the_mixture_is_the_largest_in_which_nothing_repeats(world, tmp_path) -> None:
    stats = build_anneal_mix(_cfg(world), tmp_path / "mix", world["tok"], corpus_dir=world["corpus"],
                             pretrain=PRETRAIN)
    rows = stats["sources"]
    assert all(r["repeats"] <= 1.0 + 1e-9 for r in rows) and max(r["repeats"] for r in rows) > 0.97
    assert all(abs(r["share"] - r["configured_share"]) <= 0.02 for r in rows)


def test_sources_larger_than_the_sample_are_counted_from_it(world, tmp_path) -> None:
    """With `sample_docs` below a source's size its tokens are estimated from a bottom-k hash sample (only those
    documents are tokenised while counting); shares still land within 2 points."""
    stats = build_anneal_mix(_cfg(world, tokens=12000, sample_docs=20), tmp_path / "mix", world["tok"],
                             corpus_dir=world["corpus"], pretrain=PRETRAIN)
    rows = {r["source"]: r for r in stats["sources"]}
    assert not rows["math"]["available_exact"] and rows["synthetic"]["available_exact"]  # 135 vs 8 documents
    counts = read_json(tmp_path / "mix" / "count.json")["sources"]
    assert counts["math"]["sample_docs"] == 20 and counts["synthetic"]["sample_docs"] == 8
    for r in rows.values():
        assert abs(r["share"] - r["configured_share"]) <= 0.02, r
    from infir.model.tokenizer import load_tokenizer

    tok = load_tokenizer(world["tok"])
    exact = sum(len(tok.encode(x["text"], add_special_tokens=False)) + 2 for x in world["rows"]
                if x["metadata"]["domain"] == "math")
    assert abs(rows["math"]["available_tokens"] / exact - 1) < 0.1  # estimated from 20 of 135 documents


def test_plan_and_exact_selection() -> None:
    plan = plan_mixture([0.5, 0.3, 0.2], [1000.0, 100.0, 10_000.0], [4, 4, 4], 1000)
    assert plan["capped"] == [] and plan["targets"] == pytest.approx([500, 300, 200])
    plan = plan_mixture([0.5, 0.3, 0.2], [1000.0, 50.0, 10_000.0], [4, 4, 4], 1000)
    assert plan["capped"] == [1] and plan["targets"][1] == 200
    assert plan["targets"][0] / plan["targets"][2] == pytest.approx(0.5 / 0.2) and sum(plan["targets"]) == 1000
    assert plan_mixture([0.5, 0.5], [100.0, 300.0], [4, 4], None)["total"] == 200  # nothing repeats
    tokens = np.array([40_800, 20_800, 30_100, 12_000])
    chosen = select_exact(tokens, np.array([1, 2, 3, 4], dtype=np.uint64), 21_300)
    assert chosen.tolist() == [False, True, False, False]  # not the first big document that overshoots


# --------------------------------------------------------------------------- bad input, before any work


def _nothing_written(out: Path) -> bool:
    return not any((out / sub).exists() for sub in ("curate", "count", "plan.json", "tokens"))


@pytest.mark.parametrize("case", ["empty_file", "glob_matches_nothing", "corpus_selects_nothing",
                                  "synth_without_chats", "not_a_synth_output", "pretraining_share_unknown"])
def test_bad_sources_are_refused_before_any_work(world, tmp_path, case) -> None:
    root = world["root"]
    extra: dict = {"name": "bad", "weight": 1}
    pretrain: dict | None = PRETRAIN
    match = "bad"
    if case == "empty_file":
        (tmp_path / "empty.jsonl").write_text("")
        extra["inputs"] = [str(tmp_path / "empty.jsonl")]
        match = "no documents in its inputs"
    elif case == "glob_matches_nothing":
        extra["inputs"] = [str(tmp_path / "nothing" / "*.parquet")]
        match = "matches no file"
    elif case == "corpus_selects_nothing":
        extra["corpus"] = {"domains": ["knowledge"], "sources": ["stackexchange"]}  # taken by "knowledge" first
        match = "no documents of the curated corpus"
    elif case == "synth_without_chats":
        write_jsonl(tmp_path / "s" / "sft.jsonl", [{"text": "a document, not a chat"}] * 3)
        extra["synth"] = [str(tmp_path / "s")]
        match = "holds no chats"
    elif case == "not_a_synth_output":
        (tmp_path / "s2").mkdir()
        extra["synth"] = [str(tmp_path / "s2")]
        match = "not an infir synth output"
    else:
        pretrain = None
        match = "pretraining token counts are not known"
    cfg = _cfg(world, tokens=5000)
    cfg = cfg.model_copy(update={"sources": [*cfg.sources, type(cfg.sources[0]).model_validate(extra)]}) \
        if case != "pretraining_share_unknown" else cfg
    out = tmp_path / "mix"
    with pytest.raises(ValueError, match=match):
        build_anneal_mix(cfg, out, world["tok"], corpus_dir=world["corpus"], pretrain=pretrain)
    assert _nothing_written(out)
    assert root.exists()


@pytest.mark.parametrize(("sources", "match"), [
    ([{"name": "a", "corpus": {"domains": ["math"]}, "weight": -1}], "greater than or equal to 0"),
    ([{"name": "a", "corpus": {"domains": ["math"]}, "weight": 0},
      {"name": "b", "synth": ["x"], "weight": 0}], "every weight is zero"),
    ([{"name": "a", "synth": ["x"]}], "a weight is needed"),
    ([{"name": "a", "corpus": {"sources": ["flan"]}}], "keeps its pretraining share"),
    ([{"name": "a", "corpus": {"domains": ["math"]}, "inputs": ["x"], "weight": 1}], "exactly one of"),
    ([{"name": "a", "corpus": {"domains": ["math"]}, "weight": 1}] * 2, "used twice"),
])
def test_bad_weights_and_sources_fail_validation(sources, match) -> None:
    with pytest.raises(ValueError, match=match):
        AnnealDataConfig.model_validate({"sources": sources})


def test_pretraining_share_sources_plus_zero_weights_are_refused(world, tmp_path) -> None:
    cfg = AnnealDataConfig.model_validate({"sources": [
        {"name": "code", "corpus": {"domains": ["code"]}}, {"name": "math", "corpus": {"domains": ["math"]},
                                                             "weight": 0}]})
    with pytest.raises(ValueError, match="every weight is zero"):
        build_anneal_mix(cfg, tmp_path / "mix", world["tok"], corpus_dir=world["corpus"], pretrain=PRETRAIN)
    assert _nothing_written(tmp_path / "mix")


def test_the_cli_says_what_is_wrong_and_exits_2(world, tmp_path) -> None:
    from typer.testing import CliRunner

    from infir.cli import app

    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump({"name": "r", "anneal_data": {"sources": [
        {"name": "synthetic", "synth": [str(tmp_path / "missing")], "weight": 1}]}}))
    res = CliRunner().invoke(app, ["data", "anneal", "--config", str(cfg), "--tokenizer", str(world["tok"]),
                                   "--output", str(tmp_path / "out")])
    assert res.exit_code == 2 and "not an infir synth output" in res.output
    cfg.write_text(yaml.safe_dump({"name": "r", "anneal_data": {"sources": [
        {"name": "a", "corpus": {"domains": ["math"]}, "weight": -2}]}}))
    res = CliRunner().invoke(app, ["data", "anneal", "--config", str(cfg), "--tokenizer", str(world["tok"]),
                                   "--output", str(tmp_path / "out")])
    assert res.exit_code == 2 and "weight" in res.output and not (tmp_path / "out").exists()


def test_a_recipe_cannot_weight_the_mixture_twice() -> None:
    from infir.run.recipe import RecipeError, parse_recipe

    with pytest.raises(RecipeError, match="anneal.sources"):
        parse_recipe({"name": "x", "anneal_data": {"sources": [{"name": "m", "corpus": {"domains": ["math"]},
                                                                "weight": 1}]},
                      "anneal": {"model": "micro", "max_steps": 1, "sources": [{"path": "math", "weight": 1}]}})


# --------------------------------------------------------------------------- a crash mid-mixture


def test_killed_mid_mixture_it_resumes_with_nothing_duplicated_or_lost(world, tmp_path) -> None:
    """SIGKILL `infir data anneal` while it writes the mixture; the rerun gives the same token files as an
    uninterrupted build, byte for byte."""
    cfg = _cfg(world, tokens=30000, checkpoint_every=3).model_dump(mode="json")
    config = tmp_path / "anneal.yaml"
    config.write_text(yaml.safe_dump({"name": "k", "anneal_data": cfg}))
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "infir.cli", "data", "anneal", "--config", str(config), "--tokenizer",
            str(world["tok"]), "--corpus", str(world["corpus"]), "--output", str(out)]
    shares = tmp_path / "pretrain"
    for name, share in PRETRAIN.items():  # pretraining token sources whose sizes give PRETRAIN's shares
        (shares / name).mkdir(parents=True)
        (shares / name / "index.json").write_text(json.dumps({"tokens": int(share * 1000)}))
    args += ["--pretrain-tokens", str(shares)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out / "tokens" / ".partial" / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not progress.exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert progress.exists() and not (out / "tokens" / "tokenize.json").exists(), \
        "the kill must land while the mixture is being written"
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    clean = tmp_path / "clean"
    build_anneal_mix(AnnealDataConfig.model_validate(cfg), clean, world["tok"], corpus_dir=world["corpus"],
                     pretrain={k: int(v * 1000) / sum(int(x * 1000) for x in PRETRAIN.values())
                               for k, v in PRETRAIN.items()})
    killed_files = sorted(p.relative_to(out / "tokens") for p in (out / "tokens").rglob("*") if p.is_file())
    clean_files = sorted(p.relative_to(clean / "tokens") for p in (clean / "tokens").rglob("*") if p.is_file())
    assert killed_files == clean_files and any(str(f).endswith(".npy") for f in killed_files)
    for f in killed_files:
        assert (out / "tokens" / f).read_bytes() == (clean / "tokens" / f).read_bytes(), f
    assert read_json(out / "mix_stats.json")["sources"] == read_json(clean / "mix_stats.json")["sources"]


# --------------------------------------------------------------------------- `infir data mix` (deprecated)


def test_data_mix_reads_synth_output_and_refuses_empty_sources(world, tmp_path) -> None:
    from typer.testing import CliRunner

    from infir.cli import app
    from infir.data.mixture import MixSource, build_mix

    stats = build_mix([MixSource("synthetic", world["root"] / "synth", 1.0),
                       MixSource("apps", world["root"] / "apps", 1.0)], tmp_path / "mix")
    assert stats["sources"]["synthetic"]["docs"] == 8 and stats["sources"]["apps"]["docs"] == 12  # not dropped
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no documents"):
        build_mix([MixSource("e", tmp_path / "empty", 1.0)], tmp_path / "mix2")
    write_jsonl(tmp_path / "s" / "sft.jsonl", [{"text": "no chat"}])
    with pytest.raises(ValueError, match="holds no chats"):
        build_mix([MixSource("s", tmp_path / "s", 1.0)], tmp_path / "mix3")
    res = CliRunner().invoke(app, ["data", "mix", "--source", f"s={world['root'] / 'synth'}:1.0",
                                   "--output", str(tmp_path / "mix4")])
    assert res.exit_code == 0 and "deprecated: use `infir data anneal`" in res.output
