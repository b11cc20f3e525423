"""Curation speed and fidelity vs datatrove 0.10 on the same real web documents, in the same run.

  .venv/bin/python bench/curation.py [--quick]

1. FineWeb filter chain (Gopher repetition -> Gopher quality -> C4 quality without the terminal-punct
   line rule -> FineWeb quality): datatrove's vs ours, MB/s per core (process CPU time, one process,
   our word/feature caches cleared first), and decision agreement.
2. MinHash signatures (5-gram shingles, 14x8): datatrove's MinhashDedupSignature (get_shingles +
   get_signature) vs ours, MB/s per core; shingle-set agreement (mean Jaccard of the 5-gram sets).
3. Our whole pipeline (filters + MinHash + writing) with 1 and 2 local workers and with Ray (wall MB/s).
Last line: result: filters_speedup=X minhash_speedup=Y agreement=Z
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infir.data import heuristics, minhash, words  # noqa: E402


def load_docs(data: Path, quick: bool) -> list[str]:
    corpus = data / "corpus"
    docs = [json.loads(line)["text"] for line in open(corpus / "llamafactory" / "c4_demo.jsonl")]
    if quick:
        return docs
    docs += [line.rstrip("\n") for line in open(corpus / "llamafactory" / "wiki_demo.txt") if line.strip()]
    for f in sorted((corpus / "dolma_testdata").glob("*.json*.gz")):
        docs += [json.loads(line)["text"] for line in gzip.open(f, "rt")]
    return docs


def cpu_time(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def clear_caches() -> None:
    words.clear_cache()
    for d in (
        heuristics._SYMBOL,
        heuristics._SYMBOL_LEN,
        heuristics._ALPHA,
        heuristics._PUNCT,
        heuristics._ENDS,
    ):
        d.clear()
    heuristics._SENT_STEP.clear()
    heuristics._SENT_STEP[""] = heuristics._WS_STEP
    minhash._WORD_HASH.clear()


def bench_filters(docs: list[str]) -> tuple[float, float, float, float]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.utils.text import split_into_words

    split_into_words("warm up spaCy")  # model loading is not counted
    filters = [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]

    def theirs():
        out = []
        for text in docs:
            doc, reason = Document(text=text, id="x"), None
            for f in filters:
                r = f.filter(doc)
                if r is not True:
                    reason = r[1]
                    break
            out.append(reason)
        return out

    t_dt, ref = cpu_time(theirs)
    clear_caches()
    t_ours, ours = cpu_time(lambda: [heuristics.fineweb_filters(t)[0] for t in docs])
    agree = sum((a is None) == (b is None) for a, b in zip(ref, ours, strict=True)) / len(docs)
    return t_dt, t_ours, agree, sum(a == b for a, b in zip(ref, ours, strict=True)) / len(docs)


def bench_filters_steady(docs: list[str], data: Path) -> float | None:
    """Our CPU time after the caches saw *other* text (WikiText-2 valid), as in a long-running worker."""
    other = data / "corpus" / "wikitext-2" / "valid.txt"
    if not other.exists():
        return None
    clear_caches()
    lines = other.read_text(encoding="utf-8").splitlines()
    for i in range(0, len(lines), 50):
        heuristics.fineweb_filters("\n".join(lines[i : i + 50]))
    return cpu_time(lambda: [heuristics.fineweb_filters(t)[0] for t in docs])[0]


def bench_minhash(docs: list[str]) -> tuple[float, float, float]:
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.text import ngrams, simplify_text

    with tempfile.TemporaryDirectory() as tmp:
        sig = MinhashDedupSignature(output_folder=tmp, config=MinhashConfig())
        try:
            sig._hash_func("probe")
        except TypeError:  # datatrove 0.10 passes str to xxhash; xxhash >= 4 wants bytes: encode, as intended
            import xxhash

            sig._hash_func = lambda text: xxhash.xxh64_intdigest(text.encode("utf-8"))
        sig.get_signature(sig.get_shingles("warm up the tokenizer and parameters of the hash functions"))
        t_dt, _ = cpu_time(lambda: [sig.get_signature(sig.get_shingles(t)) for t in docs])
        clear_caches()
        hasher = minhash.MinHasher()
        t_ours, _ = cpu_time(lambda: hasher.signatures(docs))
        # shingle agreement: the 5-word shingle strings each side hashes
        jac = []
        for t in docs:
            theirs = {" ".join(x) for x in ngrams(sig.word_tokenizer.word_tokenize(simplify_text(t)), 5)}
            w = minhash.normalize(t).split()
            ours = {" ".join(w[i : i + 5]) for i in range(len(w) - 4)}
            if theirs or ours:
                jac.append(len(theirs & ours) / len(theirs | ours))
    return t_dt, t_ours, sum(jac) / len(jac)


def bench_pipeline(docs: list[str], executor: str, workers: int) -> float:
    from infir.data.config import CurateConfig
    from infir.data.pipeline import run_curate

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        n_shards = 8
        for s in range(n_shards):
            with open(inp / f"part{s}.jsonl", "w") as f:
                for t in docs[s::n_shards]:
                    f.write(json.dumps({"text": t}) + "\n")
        if executor == "ray":
            import ray

            if not ray.is_initialized():  # cluster start-up is not part of the throughput
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        t0 = time.time()
        run_curate(CurateConfig(), [inp], Path(tmp) / "out", executor=executor, workers=workers)
        return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="C4 documents only, no Ray")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("INFIR_SHARED_DATA", REPO.parent / "shared" / "data")),
    )
    args = ap.parse_args()
    docs = load_docs(args.data, args.quick)
    mb = sum(len(t.encode("utf-8")) for t in docs) / 1e6
    print(
        f"{len(docs)} real documents, {mb:.2f} MB (C4{'' if args.quick else ' + Wikipedia + Common Crawl'})"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (per-core figures use CPU time)"
    )

    t_dt, t_ours, agree, same_reason = bench_filters(docs)
    f_speed = t_dt / t_ours
    print(
        f"filters   datatrove {mb / t_dt:7.3f} MB/s/core   ours {mb / t_ours:7.3f} MB/s/core   x{f_speed:.1f}"
    )
    print(f"          keep/drop agreement {agree:.4f}   same reason {same_reason:.4f}")
    t_steady = bench_filters_steady(docs, args.data)
    if t_steady:
        print(
            f"          ours after 1.1 MB of other text (warm caches): {mb / t_steady:.3f} MB/s/core   x{t_dt / t_steady:.1f}"
        )
    m_dt, m_ours, shingle_agree = bench_minhash(docs)
    m_speed = m_dt / m_ours
    print(
        f"minhash   datatrove {mb / m_dt:7.3f} MB/s/core   ours {mb / m_ours:7.3f} MB/s/core   x{m_speed:.1f}"
    )
    print(f"          5-gram shingle sets: mean Jaccard ours vs datatrove {shingle_agree:.4f}")
    runs = [("local", 1), ("local", 2)] + ([] if args.quick else [("ray", 2)])
    for executor, workers in runs:
        try:
            wall = bench_pipeline(docs, executor, workers)
            print(
                f"pipeline  {executor} x{workers}: {mb / wall:.3f} MB/s wall ({wall:.1f} s, filters+minhash+write)"
            )
        except Exception as e:  # noqa: BLE001 - report and go on (e.g. Ray missing)
            print(f"pipeline  {executor} x{workers}: failed: {e}")
    if any(e == "ray" for e, _ in runs):
        import ray

        ray.shutdown()
    print(f"result: filters_speedup={f_speed:.1f} minhash_speedup={m_speed:.1f} agreement={agree:.4f}")


if __name__ == "__main__":
    main()
