"""Annealing mix: per-source weights, deterministic, written as text and tokenized shards."""

from __future__ import annotations

import json

from infir.data.mixture import MixSource, build_mix
from infir.utils.io import read_jsonl, write_jsonl


def _source(folder, name, n):
    rows = [
        {"id": f"{name}{i}", "text": f"{name} document number {i} " * 5, "source": name, "metadata": {}}
        for i in range(n)
    ]
    write_jsonl(folder / name / "part.jsonl.gz", rows)
    return folder / name


def test_mix_weights_and_token_shards(tmp_path):
    from infir.model.tokenizer import save_tokenizer, train_bpe_tokenizer

    code = _source(tmp_path, "code", 40)
    web = _source(tmp_path, "web", 100)
    synth = _source(tmp_path, "synthetic", 10)
    tok_dir = save_tokenizer(
        train_bpe_tokenizer(["code web synthetic document number 0123456789"] * 20, 300), tmp_path / "tok"
    )
    sources = [MixSource("code", code, 1.0), MixSource("web", web, 0.1), MixSource("synthetic", synth, 2.0)]
    stats = build_mix(sources, tmp_path / "mix", tokenizer_path=tok_dir, seed=0)
    assert {k: v["docs"] for k, v in stats["sources"].items()} == {"code": 40, "web": 10, "synthetic": 20}
    rows = [r for p in sorted((tmp_path / "mix" / "mix").glob("*.jsonl.gz")) for r in read_jsonl(p)]
    assert len(rows) == 70 and {r["metadata"]["mix_source"] for r in rows} == {"code", "web", "synthetic"}
    index = json.loads((tmp_path / "mix" / "tokens" / "index.json").read_text())
    assert index["documents"] == 70 and index["tokens"] > 70
    again = build_mix(sources, tmp_path / "mix2", seed=0)
    rows2 = [r for p in sorted((tmp_path / "mix2" / "mix").glob("*.jsonl.gz")) for r in read_jsonl(p)]
    assert rows == rows2 and again["documents"] == 70
