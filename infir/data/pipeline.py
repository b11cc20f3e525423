"""The curation pipeline (InfiR §2.1.2): read -> language id -> heuristic filters -> code rules ->
reasoning recall -> global MinHash dedup -> quality -> 10-gram decontamination -> sharded output.

Three phases, each resumable: (1) per input shard, read + per-document filters + MinHash signatures;
(2) global clustering of all signatures; (3) per shard, dedup + quality + decontamination + writing.
Every shard of every phase finishes by writing a completion marker after its files (each written
atomically), so a killed run redoes only unfinished shards: nothing lost, nothing duplicated.
Invariant: input_records == kept + sum(dropped) + quarantined.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from infir.data import steps as S
from infir.data.config import CurateConfig
from infir.data.executors import run_tasks
from infir.data.minhash import MinHasher, cluster, cluster_histogram
from infir.data.readers import expand_inputs, read_path
from infir.data.records import Quarantined, Record
from infir.utils.io import atomic_path, atomic_write_json, read_jsonl, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)
WORK = ".work"


def _apply_steps(record: Record, steps: list, funnel: S.Funnel, kept: list[dict], rejects: list[dict]) -> None:
    """Run the filter steps in order; the first that objects rejects the record with its reason."""
    for step in steps:
        reason = step.check(record)
        funnel.record(step.name, reason)
        if reason:
            rejects.append(_reject_row(record, step.name, reason))
            return
    kept.append(record.to_json())


def _reject_row(rec: Record, step: str, reason: str) -> dict:
    return {**rec.to_json(), "step": step, "reason": reason}


def _phase1(
    name: str, files: list[str], root: str | None, cfg_json: str, work: str, recall_dir: str | None
) -> None:
    """Read one shard, run the per-document steps, compute MinHash signatures."""
    out = Path(work) / "p1"
    if (out / f"{name}.done").exists():
        return
    cfg = CurateConfig.model_validate_json(cfg_json)
    steps: list[S.Step] = []
    if cfg.langid.enabled:
        steps.append(S.langid_step(cfg))
    if cfg.heuristics.enabled:
        steps.append(S.heuristics_step(cfg))
    if cfg.code.enabled:
        steps.append(S.code_step(cfg))
    if cfg.recall.enabled and recall_dir:
        steps.append(S.recall_step(cfg, Path(recall_dir)))
    funnel, quarantined = S.Funnel(), Counter()
    kept: list[dict] = []
    rejects: list[dict] = []
    for path in files:
        for item in read_path(Path(path), cfg.max_doc_chars, Path(root) if root else None):
            if isinstance(item, Quarantined):
                quarantined[item.reason] += 1
                rejects.append({**item.to_json(), "step": "read", "quarantined": True})
                continue
            funnel.record("read", None)
            if "domain" not in item.metadata:
                item.metadata["domain"] = "code" if item.metadata.get("language_code") else cfg.default_domain
            _apply_steps(item, steps, funnel, kept, rejects)
    write_jsonl(out / f"{name}.kept.jsonl.gz", kept)
    write_jsonl(out / f"{name}.rejects.jsonl.gz", rejects)
    if cfg.minhash.enabled:
        m = cfg.minhash
        sigs = MinHasher(m.n_grams, m.bands, m.rows, m.seed).signatures([r["text"] for r in kept])
        with atomic_path(out / f"{name}.sig.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, sigs)
    stats = {
        "funnel": funnel.to_list(),
        "quarantined": dict(quarantined),
        "read_in": funnel.entry("read")["in"],
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
    steps: list[S.Step] = []
    if cfg.quality.enabled:
        steps.append(S.quality_step(cfg))
    if cfg.decontam.enabled and benchmarks_dir:
        steps.append(S.decontam_step(cfg, Path(benchmarks_dir)))
    funnel = S.Funnel()
    kept, rejects = [], list(read_jsonl(w / "p1" / f"{name}.rejects.jsonl.gz"))
    for i, row in enumerate(read_jsonl(w / "p1" / f"{name}.kept.jsonl.gz")):
        rec = Record.from_json(row)
        if cfg.minhash.enabled:
            dup = drops.get(str(i))
            funnel.record("minhash", "minhash_duplicate" if dup is not None else None)
            if dup is not None:
                rejects.append(
                    {
                        **_reject_row(rec, "minhash", "minhash_duplicate"),
                        "duplicate_of": {"shard": dup[0], "index": dup[1]},
                    }
                )
                continue
        _apply_steps(rec, steps, funnel, kept, rejects)
    if cfg.output_format == "parquet":
        _write_parquet(out / f"{name}.parquet", kept)
    else:
        write_jsonl(out / f"{name}.jsonl.gz", kept)
    write_jsonl(out / "rejects" / f"{name}.jsonl.gz", rejects)
    atomic_write_json(w / "p3" / f"{name}.stats.json", {"funnel": funnel.to_list(), "kept": len(kept)})
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
    inputs: list[Path],
    output: Path,
    benchmarks_dir: Path | None = None,
    executor: str = "local",
    workers: int = 1,
) -> dict:
    """Curate `inputs` into `output/*.jsonl.gz` (or *.parquet); returns the stats (also in output/stats.json)."""
    output = Path(output)
    if (output / "stats.json").exists() and not (output / WORK).exists():
        log.info("curation already finished in %s", output)
        return json.loads((output / "stats.json").read_text())
    work = output / WORK
    for folder in (output, output / "rejects", work / "p1", work / "p3"):  # leftovers of a killed write
        for stale in folder.glob(".*.tmp") if folder.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
    for sub in ("p1", "p3"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (output / "rejects").mkdir(parents=True, exist_ok=True)
    shards = expand_inputs([Path(p) for p in inputs])
    names = [s[0] for s in shards]
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
    if cfg.recall.enabled:
        from infir.data.recall import train_recall

        recall_dir = str(train_recall(cfg.recall, shards, work / "recall", cfg.max_doc_chars))
    tasks1 = [
        (n, [str(p) for p in files], str(root) if root else None, cfg_json, str(work), recall_dir)
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


def _merge_stats(names: list[str], work: Path, dedup: dict | None) -> dict:
    funnel, quarantined, kept = S.Funnel(), Counter(), 0
    for name in names:
        p1 = json.loads((work / "p1" / f"{name}.stats.json").read_text())
        p3 = json.loads((work / "p3" / f"{name}.stats.json").read_text())
        funnel.merge(p1["funnel"] + p3["funnel"])
        quarantined.update(p1["quarantined"])
        kept += p3["kept"]
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
    }
    if dedup is not None:
        stats["minhash"] = {
            "clusters": dedup["clusters"],
            "cluster_size_histogram": dedup["cluster_size_histogram"],
        }
    if input_records != kept + sum(dropped.values()) + n_quarantined:
        raise AssertionError(f"curation lost records: {stats}")
    return stats
