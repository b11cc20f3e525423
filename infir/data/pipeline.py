"""The curation pipeline (InfiR §2.1.2): read (each record with its domain) -> the domain's per-document steps
(heuristics, colon rule, code rules, recall, ...) -> global MinHash dedup -> the domain's steps after dedup
(quality, static analysis, 10-gram decontamination) -> sharded output. Which steps a domain gets, in which order,
is the step plan's business (infir/data/steps.py); this module runs the phases.

Three phases, each resumable: (1) per input shard (`infir.data.shards`: files, or record ranges of one big
file), read + per-document steps + MinHash band keys; (2) global clustering of the LSH buckets, partitioned on
disk and across workers (`infir.data.dedup`); (3) per shard, dedup + the steps after it + writing. Phases 1 and
3 stream: records are read, checked (a batch at a time) and written as they come, so a process holds one
shard's band keys at most, never its records. Every shard of every phase finishes by writing a completion
marker after its files (each written atomically), so a killed run redoes only unfinished shards: nothing lost,
nothing duplicated. Invariant, overall and per domain: input_records == kept + sum(dropped) + quarantined.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from infir.data import steps as S
from infir.data.config import CurateConfig, InputSpec
from infir.data.dedup import BucketWriter, bucket_file, drop_file, global_dedup, read_drops
from infir.data.executors import run_tasks
from infir.data.minhash import MinHasher
from infir.data.records import Quarantined, Record
from infir.data.shards import JsonlSink, ParquetSink, Shard, plan_shards
from infir.data.sources import resolve_inputs
from infir.utils.io import atomic_write_json, open_text, read_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)
WORK = ".work"


BATCH = 256  # records per step call (model scorers and recall score a batch at once)


def _run_plan(plan: S.StepPlan, batch: list[Record], funnel: S.Funnel, keep: Callable[[Record], None],
              rejects: JsonlSink) -> None:
    """Run a batch through its domains' steps (infir/data/steps.py); the first step that objects rejects."""
    for rec, outcome in zip(batch, plan.run(batch, funnel), strict=True):
        if outcome is None:
            keep(rec)
        else:
            rejects.append(_reject_row(rec, *outcome))
    batch.clear()


def _reject_row(rec: Record, step: str, reason: str) -> dict:
    return {**rec.to_json(), "step": step, "reason": reason}


def _phase1(shard: Shard, cfg_json: str, work: str, recall_dir: str | None, benchmarks_dir: str | None) -> None:
    """Read one shard, run the per-document steps, write kept records, rejects and MinHash band keys as they
    come (memory: the shard's band keys and one batch of records)."""
    name = shard.name
    out = Path(work) / "p1"
    if (out / f"{name}.done").exists():
        return
    cfg = CurateConfig.model_validate_json(cfg_json)
    plan = S.StepPlan(S.StepContext(cfg, Path(recall_dir) if recall_dir else None,
                                    Path(benchmarks_dir) if benchmarks_dir else None), phase=1)
    funnel, quarantined, by_domain, assumed = S.Funnel(), Counter(), Counter(), Counter()
    m = cfg.minhash
    buckets = BucketWriter(MinHasher(m.n_grams, m.bands, m.rows, m.seed)) if m.enabled else None
    batch: list[Record] = []
    with ExitStack() as stack:  # the files appear (atomically) only when the whole shard went through
        kept = JsonlSink(out / f"{name}.kept.jsonl.gz", stack, compresslevel=1)
        rejects = JsonlSink(out / f"{name}.rejects.jsonl.gz", stack, compresslevel=1)

        def keep(rec: Record) -> None:
            kept.append(rec.to_json())
            if buckets is not None:
                buckets.add(rec.text)

        for item in shard.read(cfg.max_doc_chars, cfg.default_domain):
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
                _run_plan(plan, batch, funnel, keep, rejects)
        _run_plan(plan, batch, funnel, keep, rejects)
    entries = buckets.save(bucket_file(Path(work), name)) if buckets is not None else 0
    stats = {
        "funnel": funnel.rows(),
        "quarantined": dict(quarantined),
        "quarantined_by_domain": dict(by_domain),
        "assumed": dict(assumed),
        "read_in": sum(r["in"] for r in funnel.rows() if r["step"] == "read"),
        "kept": kept.count,
        "band_entries": entries,
    }
    atomic_write_json(out / f"{name}.stats.json", stats)
    (out / f"{name}.done").touch()


def _phase2(names: list[str], cfg: CurateConfig, work: Path, executor: str, workers: int) -> dict:
    """Cluster all band keys globally (partitioned, `infir.data.dedup`); per shard the duplicates to drop."""
    p1 = [json.loads((work / "p1" / f"{name}.stats.json").read_text()) for name in names]
    m = cfg.minhash
    return global_dedup(names, [s["kept"] for s in p1], [s["band_entries"] for s in p1], work, m.partitions,
                        m.partition_entries, executor, workers, cfg.ray_address)


def _phase3(name: str, cfg_json: str, work: str, output: str, benchmarks_dir: str | None) -> None:
    """Drop duplicates, run the steps after dedup (quality, static analysis, decontamination), write the final
    shard and its rejects (streaming)."""
    w, out = Path(work), Path(output)
    if (w / "p3" / f"{name}.done").exists():
        return
    cfg = CurateConfig.model_validate_json(cfg_json)
    plan = S.StepPlan(S.StepContext(cfg, None, Path(benchmarks_dir) if benchmarks_dir else None), phase=3)
    funnel = S.Funnel()
    by_domain, kept_as = Counter(), Counter()
    batch: list[Record] = []
    drops = read_drops(drop_file(w, name)) if cfg.minhash.enabled else None
    names = json.loads((w / "p2" / "plan.json").read_text())["shards"] if drops is not None and len(drops) else []
    next_drop = 0  # drops are sorted by index: walk them alongside the records
    with ExitStack() as stack:
        if cfg.output_format == "parquet":
            kept: JsonlSink | ParquetSink = ParquetSink(out / f"{name}.parquet", stack)
        else:
            kept = JsonlSink(out / f"{name}.jsonl.gz", stack)
        rejects = JsonlSink(out / "rejects" / f"{name}.jsonl.gz", stack)

        def keep(rec: Record) -> None:
            kept.append(rec.to_json())
            by_domain[rec.input_domain] += 1
            kept_as[f"{rec.input_domain}>{rec.domain}"] += 1

        with open_text(w / "p1" / f"{name}.rejects.jsonl.gz") as f:
            for line in f:
                rejects.write_raw(line)
        for i, row in enumerate(read_jsonl(w / "p1" / f"{name}.kept.jsonl.gz")):
            rec = Record.from_json(row)
            if drops is not None:
                dup = None
                if next_drop < len(drops) and int(drops["idx"][next_drop]) == i:
                    dup = drops[next_drop]
                    next_drop += 1
                funnel.record("minhash", "minhash_duplicate" if dup is not None else None, rec.input_domain)
                if dup is not None:
                    rejects.append(
                        {
                            **_reject_row(rec, "minhash", "minhash_duplicate"),
                            "duplicate_of": {"shard": names[int(dup["keeper_shard"])],
                                             "index": int(dup["keeper_idx"])},
                        }
                    )
                    continue
            batch.append(rec)
            if len(batch) >= BATCH:
                _run_plan(plan, batch, funnel, keep, rejects)
        _run_plan(plan, batch, funnel, keep, rejects)
        if drops is not None and next_drop != len(drops):  # raised before the files appear
            raise AssertionError(f"{name}: {len(drops) - next_drop} duplicates were not found among its records")
    atomic_write_json(w / "p3" / f"{name}.stats.json",
                      {"funnel": funnel.rows(), "kept": kept.count, "kept_by_domain": dict(by_domain),
                       "kept_as": dict(kept_as)})
    (w / "p3" / f"{name}.done").touch()


def _plan(cfg: CurateConfig, inputs: list[InputSpec], work: Path) -> list[Shard]:
    """The shards of this run; kept in work/shards.json so a resumed run uses exactly the same ones (a run
    with other inputs or another shard size starts over)."""
    shard_bytes = int(cfg.shard_mb * (1 << 20))
    key = {"inputs": [s.model_dump(mode="json") for s in inputs], "shard_bytes": shard_bytes}
    saved = work / "shards.json"
    if saved.exists():
        plan = json.loads(saved.read_text())
        if {k: plan.get(k) for k in key} == key:
            return [Shard(s["name"], tuple(s["files"]), s["root"], tuple(s["span"]) if s["span"] else None,
                          s.get("spec")) for s in plan["shards"]]
        log.warning("%s holds an unfinished curation of other inputs; starting over", work)
        shutil.rmtree(work)
    shards = plan_shards(inputs, shard_bytes)
    rows = [{"name": s.name, "files": list(s.files), "root": s.root, "span": s.span, "spec": s.spec}
            for s in shards]
    atomic_write_json(saved, {**key, "shards": rows})
    return shards


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
    for folder in (output, output / "rejects", work, work / "p1", work / "p2", work / "p2" / "edges",
                   work / "p2" / "drops", work / "p3"):  # leftovers of a killed write
        for stale in folder.glob(".*.tmp") if folder.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
    shards = _plan(cfg, specs, work)
    for sub in ("p1", "p3"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (output / "rejects").mkdir(parents=True, exist_ok=True)
    names = [s.name for s in shards]
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
        from infir.data.recall import train_recall

        domains = set(cfg.recall.domains)
        pool = (item.text for shard in shards for item in shard.read(cfg.max_doc_chars, cfg.default_domain)
                if isinstance(item, Record) and item.domain in domains)
        recall_dir = str(train_recall(cfg.recall, pool, work / "recall", cfg.max_doc_chars))
    bench = str(benchmarks_dir) if benchmarks_dir else None
    tasks1 = [(shard, cfg_json, str(work), recall_dir, bench) for shard in shards]
    run_tasks(_phase1, tasks1, executor, workers, cfg.ray_address, "filter")
    dedup = _phase2(names, cfg, work, executor, workers) if cfg.minhash.enabled else None
    tasks3 = [(n, cfg_json, str(work), str(output), bench) for n in names]
    run_tasks(_phase3, tasks3, executor, workers, cfg.ray_address, "dedup+write")

    stats = _merge_stats(names, work, dedup)
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
            "duplicates": dedup["duplicates"],
        }
    if input_records != kept + sum(dropped.values()) + n_quarantined:
        raise AssertionError(f"curation lost records: {stats}")
    return stats
