"""Does curation memory grow with the corpus? Peak RSS and wall time of `infir data curate` and of the
tokenisation stage on 4x, 8x and 32x one corpus.

  OMP_NUM_THREADS=1 .venv/bin/python bench/curation_scale.py [--scales 4,8,32] [--workers 1] [--executor local]

The corpus (as issue 17 describes it): the 300 real C4 documents of shared/data/corpus/llamafactory/c4_demo.jsonl
and the 64 WikiText-2 test articles (2.0 MB of text together), repeated N times; every repeat after the first
shuffles each line's 6-word windows (seeded), so repeats are neither exact nor (mostly) near duplicates and every
stage sees N times the work. One file, ONE.jsonl.gz, documents in a seeded random order.

Per scale it runs, each in a fresh process tree (the largest process's peak RSS, children included, is
getrusage(RUSAGE_CHILDREN).ru_maxrss of a helper that runs only that command: the peak of the largest process
of the tree; Ray's workers are not children, so use the local executor for this figure; time is wall-clock):
  1. `python -m infir.cli data curate --input ONE.jsonl.gz --output DIR` (default config; --workers/--executor)
  2. the tokenisation stage (`infir.run.stages.tokenize_by_domain`) over the curated shards with the real
     Llama 3 tokenizer (shared/data/tokenizers/llama3/tokenizer.model).
CPU seconds (user + system of the process tree) are printed beside wall time: on a shared machine they show
linearity better. Last line: result: curate_rss_ratio=R (largest / smallest scale) curate_time_ratio=...
curate_cpu_ratio=... tokenize_rss_ratio=...

--dedup-docs N runs phase 2 (the global clustering) alone on synthetic LSH buckets of N documents (30% of them
copying 1-14 bands of an earlier document) and prints its time and the peak RSS of a partition task and of the
merging process: the figures the 1 TB projection in bench/RESULTS.md scales.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INFIR_SHARED_DATA", REPO.parent / "shared" / "data"))
WINDOW = 6


def base_documents(data: Path) -> list[tuple[str, str]]:
    """(id, text): the real C4 demo documents and the WikiText-2 test articles."""
    docs = [(f"c4-{i}", json.loads(line)["text"])
            for i, line in enumerate(open(data / "corpus" / "llamafactory" / "c4_demo.jsonl", encoding="utf-8"))]
    article: list[str] = []
    n = 0

    def close() -> None:
        nonlocal n
        text = "\n".join(line.strip() for line in article if line.strip())
        if text:
            docs.append((f"wikitext-{n}", text))
            n += 1

    for line in open(data / "corpus" / "wikitext-2" / "test.txt", encoding="utf-8"):
        s = line.strip()
        if s.startswith("= ") and s.endswith(" =") and not s.startswith("= ="):  # a top-level title
            close()
            article = [s.strip("= ").strip()]
        else:
            article.append(line)
    close()
    return docs


def shuffle_windows(text: str, rng: random.Random) -> str:
    """Each line's words in windows of 6, the windows shuffled (the last one stays last)."""
    out = []
    for line in text.split("\n"):
        words = line.split()
        windows = [words[i : i + WINDOW] for i in range(0, len(words), WINDOW)]
        if len(windows) > 2:
            body = windows[:-1]
            rng.shuffle(body)
            windows = body + windows[-1:]
        out.append(" ".join(w for window in windows for w in window))
    return "\n".join(out)


def corpus_rows(scale: int, data: Path, seed: int = 0) -> list[tuple[str, str]]:
    """(id, text) of `scale` copies of the base documents, every copy after the first with shuffled word
    windows (so repeats are not exact duplicates), in a seeded random order."""
    base = base_documents(data)
    rows = []
    for rep in range(scale):
        for j, (doc_id, text) in enumerate(base):
            if rep:
                text = shuffle_windows(text, random.Random(f"{seed}-{rep}-{j}"))
            rows.append((f"{doc_id}-r{rep}", text))
    random.Random(seed).shuffle(rows)
    return rows


def build_corpus(path: Path, scale: int, data: Path, seed: int = 0) -> dict:
    rows = [{"id": doc_id, "text": text} for doc_id, text in corpus_rows(scale, data, seed)]
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"documents": len(rows), "text_mb": sum(len(r["text"].encode()) for r in rows) / 1e6,
            "file_mb": path.stat().st_size / 1e6}


def run_one(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Run in a fresh helper process so that RUSAGE_CHILDREN holds exactly this command's tree."""
    helper = (
        "import json, resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t0\n"
        "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'wall': wall, 'rss': ru.ru_maxrss / 1024, 'cpu': ru.ru_utime + ru.ru_stime,"
        " 'code': done.returncode, 'out': done.stdout, 'err': done.stderr[-3000:]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", helper, json.dumps(cmd)], env=env, capture_output=True, text=True)
    res = json.loads(done.stdout.strip().splitlines()[-1])
    if res["code"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res['code']}):\n{res['err']}")
    LAST_CPU[0] = res["cpu"]
    return res["wall"], res["rss"], res["out"]


LAST_CPU = [0.0]  # CPU seconds (user + system) of the last command's process tree


TOKENIZE = (
    "import json, sys; from pathlib import Path; from infir.run.stages import tokenize_by_domain;"
    "from infir.utils.io import read_jsonl\n"
    "curated = Path(sys.argv[1])\n"
    "def records():\n"
    "    for shard in sorted(curated.glob('*.jsonl*')):\n"
    "        yield from read_jsonl(shard)\n"
    "counts = tokenize_by_domain(records(), Path(sys.argv[2]), Path(sys.argv[3]))\n"
    "tokens = sum(json.loads(p.read_text())['tokens'] for p in Path(sys.argv[3]).glob('*/index.json'))\n"
    "print(json.dumps({'documents': counts, 'tokens': tokens}))\n"
)


DEDUP = (
    "import json, resource, sys, time; from pathlib import Path; from infir.data.dedup import global_dedup\n"
    "work = Path(sys.argv[1]); meta = json.loads((work / 'meta.json').read_text())\n"
    "t0 = time.perf_counter()\n"
    "stats = global_dedup(meta['names'], meta['documents'], meta['entries'], work, None, meta['partition_entries'],"
    " workers=2)\n"
    "hwm = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')][0] / 1024\n"
    "tasks = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'seconds': time.perf_counter() - t0, 'merge_process_peak_mb': hwm,"
    " 'partition_task_peak_mb': tasks, **stats}))\n"
)


def dedup_bench(work: Path, documents: int, shards: int, dup_fraction: float, partition_entries: int,
                env: dict) -> dict:
    """Phase 2 alone on synthetic LSH buckets (the files phase 1 writes) of `documents` documents: a share
    `dup_fraction` copy 1-14 bands of an earlier document (so clusters span shards). Time, the peak RSS of a
    partition task and of the merging process."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from infir.data.dedup import ENTRY, bucket_file

    rng = np.random.default_rng(0)
    bands = 14
    keys = rng.integers(0, 2**63, size=(documents, bands), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    dups = np.flatnonzero(rng.random(documents) < dup_fraction)
    dups = dups[dups > 0]
    sources = (rng.random(len(dups)) * dups).astype(np.int64)  # an earlier document
    copied = rng.random((len(dups), bands)) < rng.uniform(0.07, 1.0, size=(len(dups), 1))
    for d, s, mask in zip(dups.tolist(), sources.tolist(), copied, strict=True):
        keys[d, mask] = keys[s, mask]
    (work / "p1").mkdir(parents=True, exist_ok=True)
    per = -(-documents // shards)
    names, docs, entries = [], [], []
    for k in range(shards):
        block = keys[k * per : (k + 1) * per]
        flat = block.ravel()
        order = np.argsort(flat, kind="stable")
        out = np.empty(len(flat), dtype=ENTRY)
        out["key"], out["band"] = flat[order], np.tile(np.arange(bands, dtype=np.uint8), len(block))[order]
        out["idx"] = np.repeat(np.arange(len(block), dtype=np.uint32), bands)[order]
        name = f"s{k:05d}"
        np.save(bucket_file(work, name), out)
        names.append(name)
        docs.append(len(block))
        entries.append(len(out))
    del keys
    (work / "meta.json").write_text(json.dumps({"names": names, "documents": docs, "entries": entries,
                                                "partition_entries": partition_entries}))
    wall, rss, out_text = run_one([sys.executable, "-c", DEDUP, str(work)], env)
    res = json.loads(out_text.strip().splitlines()[-1])
    res.pop("cluster_size_histogram")
    return {"documents": documents, "shards": shards, "band_entries": sum(entries), "wall_s": wall,
            "largest_process_peak_mb": rss, **res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", default="4,8,32")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--executor", default="local")
    ap.add_argument("--workdir", type=Path, default=None, help="keep corpora and outputs here")
    ap.add_argument("--no-tokenize", action="store_true")
    ap.add_argument("--dedup-docs", type=int, default=0,
                    help="also run phase 2 alone on synthetic buckets of this many documents (e.g. 1000000)")
    ap.add_argument("--dedup-shards", type=int, default=64)
    ap.add_argument("--partition-entries", type=int, default=2_000_000)
    args = ap.parse_args()
    if not (DATA / "corpus" / "llamafactory" / "c4_demo.jsonl").exists():
        sys.exit(f"needs the shared data ({DATA}); set INFIR_SHARED_DATA")
    scales = [int(s) for s in args.scales.split(",") if s]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="infir-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if args.dedup_docs:
        folder = work / f"dedup-{args.dedup_docs}"
        shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps({"phase2": dedup_bench(folder, args.dedup_docs, args.dedup_shards, 0.3,
                                                args.partition_entries, env)}), flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    if not scales:
        return
    tokenizer = DATA / "tokenizers" / "llama3"
    rows = []
    for scale in scales:
        corpus = work / f"ONE-{scale}x.jsonl.gz"
        info = build_corpus(corpus, scale, DATA)
        out = work / f"curated-{scale}x"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "infir.cli", "data", "curate", "--input", str(corpus), "--output", str(out),
               "--workers", str(args.workers), "--executor", args.executor]
        wall, rss, stdout = run_one(cmd, env)
        summary = json.loads(stdout.strip().splitlines()[-1])
        row = {"scale": scale, **info, "kept": summary["kept"], "curate_s": wall, "curate_cpu_s": LAST_CPU[0],
               "curate_rss_mb": rss}
        if not args.no_tokenize:
            tok_out = work / f"tokens-{scale}x"
            shutil.rmtree(tok_out, ignore_errors=True)
            twall, trss, tstdout = run_one([sys.executable, "-c", TOKENIZE, str(out), str(tokenizer), str(tok_out)],
                                           env)
            row.update(tokenize_s=twall, tokenize_cpu_s=LAST_CPU[0], tokenize_rss_mb=trss,
                       tokens=json.loads(tstdout.splitlines()[-1])["tokens"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'scale':>5} {'text MB':>8} {'docs':>7} {'kept':>7} {'curate s':>9} {'cpu s':>7} {'MB/cpu-s':>8}"
          f" {'peak RSS MB':>12} {'tokens':>10} {'tok s':>7} {'tok cpu s':>9} {'tok RSS MB':>11}")
    for r in rows:
        print(f"{r['scale']:>5} {r['text_mb']:>8.1f} {r['documents']:>7} {r['kept']:>7} {r['curate_s']:>9.1f}"
              f" {r['curate_cpu_s']:>7.1f} {r['text_mb'] / r['curate_cpu_s']:>8.3f} {r['curate_rss_mb']:>12.1f}"
              f" {r.get('tokens', 0):>10} {r.get('tokenize_s', 0):>7.1f} {r.get('tokenize_cpu_s', 0):>9.1f}"
              f" {r.get('tokenize_rss_mb', 0):>11.1f}")
    lo, hi = rows[0], rows[-1]
    result = (f"result: curate_rss_ratio={hi['curate_rss_mb'] / lo['curate_rss_mb']:.3f} "
              f"curate_time_ratio={hi['curate_s'] / lo['curate_s']:.2f} "
              f"curate_cpu_ratio={hi['curate_cpu_s'] / lo['curate_cpu_s']:.2f} (text x{hi['text_mb'] / lo['text_mb']:.2f})")
    if not args.no_tokenize:
        result += f" tokenize_rss_ratio={hi['tokenize_rss_mb'] / lo['tokenize_rss_mb']:.3f}"
    print(result)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
