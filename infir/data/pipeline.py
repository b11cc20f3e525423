"""The curation pipeline (InfiR §2.1.2): read (each record with its domain) -> the domain's per-document steps
(heuristics, colon rule, code rules, recall, ...) -> global MinHash dedup -> the domain's steps after dedup
(quality, static analysis, 10-gram decontamination) -> sharded output. Which steps a domain gets, in which order,
is the step plan's business (infir/data/steps.py); this module runs the phases.

Three phases, each resumable: (1) per input shard, read + per-document steps + MinHash signatures;
(2) global clustering of all signatures; (3) per shard, dedup + the steps after it + writing.
Every shard of every phase finishes by writing a completion marker after its files (each written
atomically), so a killed run redoes only unfinished shards: nothing lost, nothing duplicated.
Invariant, overall and per domain: input_records == kept + sum(dropped) + quarantined.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from infir.data import steps as S
from infir.data.config import CurateConfig, InputSpec
from infir.data.executors import run_tasks
from infir.data.minhash import MinHasher, cluster, cluster_histogram
from infir.data.readers import expand_inputs, read_path
from infir.data.records import Quarantined, Record
from infir.data.sources import resolve_inputs
from infir.utils.io import atomic_path, atomic_write_json, read_jsonl, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)
WORK = ".work"


def _run_plan(plan: S.StepPlan, batch: list[Record], funnel: S.Funnel, kept: list, rejects: list[dict]) -> None:
    """Run a batch through its domains' steps (infir/data/steps.py); the first step that objects rejects."""
    for rec, outcome in zip(batch, plan.run(batch, funnel), strict=True):
        if outcome is None:
            kept.append(rec)
        else:
            rejects.append(_reject_row(rec, *outcome))
    batch.clear()


def _reject_row(rec: Record, step: str, reason: str) -> dict:
    return {**rec.to_json(), "step": step, "reason": reason}


BATCH = 256  # records per step call (model scorers and recall score a batch at once)


def _phase1(
    name: str, files: list[str], root: str | None, cfg_json: str, work: str, recall_dir: str | None,
    extra_json: str = "{}",
) -> None:
    """Read one shard, run the per-document steps, compute MinHash signatures."""
    out = Path(work) / "p1"
    if (out / f"{name}.done").exists():
        return
    cfg = CurateConfig.model_validate_json(cfg_json)
    extra = json.loads(extra_json)
    bench = extra.get("benchmarks_dir")
    plan = S.StepPlan(S.StepContext(cfg, Path(recall_dir) if recall_dir else None, Path(bench) if bench else None),
                      phase=1)
    funnel, quarantined, by_domain, assumed = S.Funnel(), Counter(), Counter(), Counter()
    kept_recs: list[Record] = []
    rejects: list[dict] = []
    batch: list[Record] = []
    specs = extra.get("file_specs", {})
    for path in files:
        spec = InputSpec.model_validate(specs[path]) if path in specs else InputSpec(path=path)
        for item in read_path(Path(path), cfg.max_doc_chars, Path(root) if root else None, spec,
                              cfg.default_domain):
            if isinstance(item, Quarantined):
                quarantined[item.reason] += 1
                by_domain[item.domain] += 1
                rejects.append({**item.to_json(), "step": "read", "quarantined": True})
                continue
            funnel.record("read", None, item.input_domain)
            if item.metadata.get("domain_from") == "assumed":
                assumed[item.domain] += 1
            batch.append(item)
            if len(batch) >= BATCH:
                _run_plan(plan, batch, funnel, kept_recs, rejects)
    _run_plan(plan, batch, funnel, kept_recs, rejects)
    kept = [r.to_json() for r in kept_recs]
    write_jsonl(out / f"{name}.kept.jsonl.gz", kept)
    write_jsonl(out / f"{name}.rejects.jsonl.gz", rejects)
    if cfg.minhash.enabled:
        m = cfg.minhash
        sigs = MinHasher(m.n_grams, m.bands, m.rows, m.seed).signatures([r["text"] for r in kept])
        with atomic_path(out / f"{name}.sig.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, sigs)
    stats = {
        "funnel": funnel.rows(),
        "quarantined": dict(quarantined),
        "quarantined_by_domain": dict(by_domain),
        "assumed": dict(assumed),
        "read_in": sum(r["in"] for r in funnel.rows() if r["step"] == "read"),
    }
    atomic_write_json(out / f"{name}.stats.json", stats)
    (out / f"{name}.done").touch()


def _phase2(names: list[str], cfg: CurateConfig, work: Path) -> dict:
    """Cluster all signatures globally; per shard the indices of duplicates to drop."""
    target = work / "dedup.json"
    if target.exists():
        return json.loads(target.read_text())
    sigs, owners = [], []
    for name in names:
        s = np.load(work / "p1" / f"{name}.sig.npy")
        sigs.append(s)
        owners += [(name, i) for i in range(len(s))]
    m = cfg.minhash
    allsig = np.concatenate(sigs) if sigs else np.zeros((0, m.bands * m.rows), dtype=np.uint32)
    valid = ~(allsig == np.iinfo(np.uint32).max).all(axis=1)  # documents without words never match
    roots = cluster(allsig, m.bands, m.rows, valid)
    drops: dict[str, dict[str, list]] = {name: {} for name in names}
    for i, r in enumerate(roots.tolist()):
        if r != i:  # not the first document of its cluster: drop, remembering which one is kept
            name, idx = owners[i]
            drops[name][str(idx)] = list(owners[r])
    result = {
        "drops": drops,
        "clusters": int(sum(1 for v in Counter(roots.tolist()).values() if v > 1)),
        "cluster_size_histogram": cluster_histogram(roots),
    }
    atomic_write_json(target, result, indent=None)
    return result


def _phase3(
    name: str, cfg_json: str, work: str, output: str, drops: dict, benchmarks_dir: str | None
) -> None:
    """Drop duplicates, score quality, decontaminate, write the final shard and its rejects."""
    w, out = Path(work), Path(output)
    if (w / "p3" / f"{name}.done").exists():
        return
    cfg = CurateConfig.model_validate_json(cfg_json)
    plan = S.StepPlan(S.StepContext(cfg, None, Path(benchmarks_dir) if benchmarks_dir else None), phase=3)
    funnel = S.Funnel()
    kept_recs: list[Record] = []
    batch: list[Record] = []
    rejects = list(read_jsonl(w / "p1" / f"{name}.rejects.jsonl.gz"))
    for i, row in enumerate(read_jsonl(w / "p1" / f"{name}.kept.jsonl.gz")):
        rec = Record.from_json(row)
        if cfg.minhash.enabled:
            dup = drops.get(str(i))
            funnel.record("minhash", "minhash_duplicate" if dup is not None else None, rec.input_domain)
            if dup is not None:
                rejects.append(
                    {
                        **_reject_row(rec, "minhash", "minhash_duplicate"),
                        "duplicate_of": {"shard": dup[0], "index": dup[1]},
                    }
                )
                continue
        batch.append(rec)
        if len(batch) >= BATCH:
            _run_plan(plan, batch, funnel, kept_recs, rejects)
    _run_plan(plan, batch, funnel, kept_recs, rejects)
    kept = [r.to_json() for r in kept_recs]
    if cfg.output_format == "parquet":
        _write_parquet(out / f"{name}.parquet", kept)
    else:
        write_jsonl(out / f"{name}.jsonl.gz", kept)
    write_jsonl(out / "rejects" / f"{name}.jsonl.gz", rejects)
    by_domain = Counter(r.input_domain for r in kept_recs)
    kept_as = Counter(f"{r.input_domain}>{r.domain}" for r in kept_recs)
    atomic_write_json(w / "p3" / f"{name}.stats.json",
                      {"funnel": funnel.rows(), "kept": len(kept), "kept_by_domain": dict(by_domain),
                       "kept_as": dict(kept_as)})
    (w / "p3" / f"{name}.done").touch()


def _write_parquet(path: Path, rows: list[dict]) -> None:
    """Parquet shard: id, text, source, metadata (a JSON string: metadata differs between records)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "text": [r["text"] for r in rows],
            "source": [r["source"] for r in rows],
            "metadata": [json.dumps(r["metadata"], ensure_ascii=False) for r in rows],
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def run_curate(
    cfg: CurateConfig,
    inputs: list[Path | str | InputSpec],
    output: Path,
    benchmarks_dir: Path | None = None,
    executor: str = "local",
    workers: int = 1,
) -> dict:
    """Curate `inputs` (paths, globs, `PATH:DOMAIN` strings or InputSpecs) into `output/*.jsonl.gz` (or
    *.parquet); returns the stats (also in output/stats.json)."""
    output = Path(output)
    if (output / "stats.json").exists() and not (output / WORK).exists():
        log.info("curation already finished in %s", output)
        return json.loads((output / "stats.json").read_text())
    # Everything that can be known before any work: inputs (formats, languages), step lists, seeds, scorers.
    specs = resolve_inputs([p if isinstance(p, InputSpec) else str(p) for p in inputs])
    S.check_plan(cfg, benchmarks_dir)
    work = output / WORK
    for folder in (output, output / "rejects", work / "p1", work / "p3"):  # leftovers of a killed write
        for stale in folder.glob(".*.tmp") if folder.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
    for sub in ("p1", "p3"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (output / "rejects").mkdir(parents=True, exist_ok=True)
    shards = expand_inputs(specs)
    names = [s[0] for s in shards]
    file_specs = spec_of_files(specs, shards)
    cfg_json = cfg.model_dump_json()
    log.info(
        "curating %d shard(s) from %d input(s) into %s (%s x%d)",
        len(shards),
        len(inputs),
        output,
        executor,
        workers,
    )

    recall_dir = None
    if any("recall" in names_ for names_ in S.default_steps(cfg).values()):
        from infir.data.recall import pool_texts, train_recall

        pool = pool_texts(((f, file_specs.get(str(f)), root) for _, files, root in shards for f in files), cfg)
        recall_dir = str(train_recall(cfg.recall, pool, work / "recall", cfg.max_doc_chars))
    bench = str(benchmarks_dir) if benchmarks_dir else None
    tasks1 = [
        (n, [str(p) for p in files], str(root) if root else None, cfg_json, str(work), recall_dir,
         json.dumps({"benchmarks_dir": bench,
                     "file_specs": {str(f): file_specs[str(f)].model_dump() for f in files
                                    if str(f) in file_specs}}))
        for n, files, root in shards
    ]
    run_tasks(_phase1, tasks1, executor, workers, cfg.ray_address, "filter")
    dedup = _phase2(names, cfg, work) if cfg.minhash.enabled else {"drops": {}}
    tasks3 = [
        (
            n,
            cfg_json,
            str(work),
            str(output),
            dedup["drops"].get(n, {}),
            str(benchmarks_dir) if benchmarks_dir else None,
        )
        for n in names
    ]
    run_tasks(_phase3, tasks3, executor, workers, cfg.ray_address, "dedup+write")

    stats = _merge_stats(names, work, dedup if cfg.minhash.enabled else None)
    if recall_dir:
        stats["recall"] = json.loads((Path(recall_dir) / "recall_stats.json").read_text())
    atomic_write_json(output / "stats.json", stats)
    shutil.rmtree(work, ignore_errors=True)
    log.info(
        "kept %d of %d records -> %s (stats.json, rejects/)", stats["kept"], stats["input_records"], output
    )
    return stats


def spec_of_files(specs: list[InputSpec], shards: list) -> dict[str, InputSpec]:
    """The corpus input each shard file came from (the deepest input path that holds it)."""
    by_path = {str(Path(s.path)): s for s in specs}
    out: dict[str, InputSpec] = {}
    for _, files, _ in shards:
        for f in files:
            p = Path(f)
            for cand in (p, *p.parents):
                if str(cand) in by_path:
                    out[str(f)] = by_path[str(cand)]
                    break
    return out


def _merge_stats(names: list[str], work: Path, dedup: dict | None) -> dict:
    funnel, quarantined, kept = S.Funnel(), Counter(), 0
    q_domain, assumed, kept_domain, kept_as = Counter(), Counter(), Counter(), Counter()
    for name in names:
        p1 = json.loads((work / "p1" / f"{name}.stats.json").read_text())
        p3 = json.loads((work / "p3" / f"{name}.stats.json").read_text())
        funnel.merge(p1["funnel"] + p3["funnel"])
        quarantined.update(p1["quarantined"])
        q_domain.update(p1.get("quarantined_by_domain", {}))
        assumed.update(p1.get("assumed", {}))
        kept += p3["kept"]
        kept_domain.update(p3.get("kept_by_domain", {}))
        kept_as.update(p3.get("kept_as", {}))
    rows = funnel.to_list()
    dropped = Counter()
    for row in rows:
        dropped.update(row["dropped"])
    n_quarantined = sum(quarantined.values())
    input_records = (rows[0]["in"] if rows else 0) + n_quarantined
    stats = {
        "input_records": input_records,
        "kept": kept,
        "dropped": dict(dropped),
        "quarantined": n_quarantined,
        "quarantined_by_reason": dict(quarantined),
        "funnel": rows,
        "shards": len(names),
        "assumed": sum(assumed.values()),
    }
    moved: dict[str, dict[str, int]] = {}
    for key, n in kept_as.items():
        src, dst = key.split(">", 1)
        moved.setdefault(src, {})[dst] = n
    stats["domains"] = S.domain_summary(funnel, dict(q_domain), dict(kept_domain), dict(assumed), moved)
    if dedup is not None:
        stats["minhash"] = {
            "clusters": dedup["clusters"],
            "cluster_size_histogram": dedup["cluster_size_histogram"],
        }
    if input_records != kept + sum(dropped.values()) + n_quarantined:
        raise AssertionError(f"curation lost records: {stats}")
    return stats
