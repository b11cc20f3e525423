"""Does the annealing mixture's memory grow with the corpus? Peak RSS and time of `infir data anneal` (Table 8's
mixture: read, decontaminate the annealing files, count, plan, tokenize) on 4x, 8x and 32x one corpus.

  OMP_NUM_THREADS=1 .venv/bin/python bench/anneal_scale.py [--scales 4,8,32] [--workdir DIR]

The corpus is bench/curation_scale.py's (the 300 real C4 documents and the 64 WikiText-2 test articles, 2.0 MB of
text, repeated N times, every repeat's 6-word windows shuffled), laid out as the mixture reads it:
  - 80% as a curated pretraining corpus (`infir data curate` output: shards of about 8 MB of JSONL.gz, records with
    domain and source name metadata): domains math, code, knowledge, wiki by turns, and web pages of which every
    fourth is recalled as math (§2.2 keeps those, drops the rest);
  - 20% as ONE Dolma-format annealing file (Dolmino's layout), which the mixture curates (decontamination against
    GSM8K, MATH, HumanEval, MBPP and MMLU from shared/data).
Sources: math, code (its pretraining share, from a pretraining token folder), knowledge, wiki and dolmino, equal
weights, no size given: the largest mixture in which no source repeats, so nearly every document is tokenised
(with the real Llama 3 tokenizer). Each scale runs in a fresh process tree; "peak RSS" is the largest process's
peak (ru_maxrss of the tree, children included). Last line: result: rss_ratio=R (largest / smallest scale)
time_ratio=... cpu_ratio=... text_ratio=...
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curation_scale import DATA, LAST_CPU, REPO, corpus_rows, run_one  # noqa: E402

DOMAINS = [("math", "open-web-math"), ("code", "the-stack-v2"), ("knowledge", "stackexchange"),
           ("wiki", "wikipedia")]


def build(root: Path, scale: int, data: Path, seed: int = 0) -> dict:
    rows = corpus_rows(scale, data, seed)
    corpus = root / "curated"
    corpus.mkdir(parents=True)
    shard, size, n = None, 0, 0
    anneal_rows = []
    for k, (doc_id, text) in enumerate(rows):
        if k % 5 == 4:
            anneal_rows.append({"id": doc_id, "text": text, "added": "2024-11-24", "created": "2024",
                                "source": "dolmino", "metadata": {}})
            continue
        if (k // 5) % 5 == 4:  # a web page; every fourth one recall moved to math
            recalled = (k // 25) % 4 == 0
            meta = {"domain": "math" if recalled else "web", "source_name": "fineweb-edu"}
            if recalled:
                meta["recalled_from"] = "web"
        else:
            domain, source = DOMAINS[k % 5]
            meta = {"domain": domain, "source_name": source}
        if shard is None or size > 8_000_000:
            if shard is not None:
                shard.close()
            shard = gzip.open(corpus / f"000-{n:05d}-corpus.jsonl.gz", "wt", encoding="utf-8", compresslevel=1)
            size, n = 0, n + 1
        shard.write(json.dumps({"id": doc_id, "text": text, "source": meta["source_name"], "metadata": meta}) + "\n")
        size += len(text)
    if shard is not None:
        shard.close()
    (corpus / "stats.json").write_text("{}")
    dolmino = root / "dolmino" / "data" / "math" / "dolmino-0000.json.gz"
    dolmino.parent.mkdir(parents=True)
    with gzip.open(dolmino, "wt", encoding="utf-8", compresslevel=1) as f:
        f.writelines(json.dumps(r) + "\n" for r in anneal_rows)
    pretrain = root / "pretrain-tokens"
    for name, tokens in (("code", 30), ("math", 20), ("web", 50)):  # code: 30% of the pretraining tokens
        (pretrain / name).mkdir(parents=True)
        (pretrain / name / "index.json").write_text(json.dumps({"tokens": tokens}))
    cfg = {"anneal_data": {"sources": [
        {"name": "math", "corpus": {"domains": ["math"]}, "weight": 1},
        {"name": "code", "corpus": {"domains": ["code"]}},
        {"name": "knowledge", "corpus": {"domains": ["knowledge"]}, "weight": 1},
        {"name": "wiki", "corpus": {"domains": ["wiki"]}, "weight": 1},
        {"name": "dolmino", "inputs": [str(dolmino)], "weight": 1}]}}
    (root / "anneal.yaml").write_text(json.dumps(cfg))
    return {"documents": len(rows), "text_mb": sum(len(t.encode()) for _, t in rows) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", default="4,8,32")
    ap.add_argument("--workdir", type=Path, default=None, help="keep corpora and outputs here")
    args = ap.parse_args()
    tokenizer = DATA / "tokenizers" / "llama3" / "tokenizer.model"
    if not tokenizer.exists():
        sys.exit(f"needs {tokenizer} (set INFIR_SHARED_DATA)")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(REPO)}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="anneal-scale-"))
    results = []
    for scale in [int(s) for s in args.scales.split(",") if s]:
        root = work / f"x{scale}"
        shutil.rmtree(root, ignore_errors=True)
        info = build(root, scale, DATA)
        cmd = [sys.executable, "-m", "infir.cli", "data", "anneal", "--config", str(root / "anneal.yaml"),
               "--corpus", str(root / "curated"), "--tokenizer", str(tokenizer), "--pretrain-tokens",
               str(root / "pretrain-tokens"), "--benchmarks", str(DATA), "--output", str(root / "mix")]
        wall, rss, out = run_one(cmd, env)
        summary = json.loads(out.strip().splitlines()[-1])
        res = {"scale": scale, **info, "mix_tokens": summary["tokens"], "mix_documents": summary["documents"],
               "peak_rss_mb": round(rss, 1), "wall_s": round(wall, 1), "cpu_s": round(LAST_CPU[0], 1),
               "shares": {k: round(v["share"], 4) for k, v in summary["sources"].items()}}
        results.append(res)
        print(json.dumps(res), flush=True)
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(f"result: rss_ratio={b['peak_rss_mb'] / a['peak_rss_mb']:.3f} time_ratio={b['wall_s'] / a['wall_s']:.2f} "
              f"cpu_ratio={b['cpu_s'] / a['cpu_s']:.2f} text_ratio={b['text_mb'] / a['text_mb']:.2f} "
              f"tokens_ratio={b['mix_tokens'] / a['mix_tokens']:.2f}")


if __name__ == "__main__":
    main()
