"""Global MinHash clustering that never holds all signatures in one process (the paper's global dedup, §2.1.2,
at corpus scale). Three steps:

1. Per shard (phase 1 of the pipeline), `BucketWriter` turns each kept document's MinHash signature into its
   band keys (`minhash.band_keys`: the LSH buckets) and writes them sorted by key as `<shard>.lsh.npy`
   (13 bytes per band: key, band, index). Memory: the shard's keys, bounded by the shard size.
2. Per partition, a range of key values (one executor task each: local processes or Ray workers),
   `cluster_partition` reads its key range from every shard's file (memory-mapped, found by binary search),
   links documents that share a (band, key) bucket, and writes its components as star edges
   (member -> smallest member). Memory: one partition, bounded by `partition_entries`.
3. `merge_edges` finds the components of the union of the edge lists (union-find as connected components,
   scipy) batch by batch, and `write_drops` records per shard which documents go and which one each
   duplicates. Memory: the documents that have a duplicate (a few bytes each), never a signature.

A document's id is (shard number << 32) | its index among the shard's kept records, so the smallest id of a
cluster is its first document in input order, the one kept: the rule of `minhash.cluster` in one process.
Components of a graph do not depend on how its edges are split, so the kept set is the same for any number of
shards, partitions and workers, and equal to the in-memory clustering's.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from infir.data.executors import run_tasks
from infir.data.minhash import MinHasher, band_keys
from infir.utils.io import atomic_path, atomic_write_json
from infir.utils.log import get_logger

log = get_logger(__name__)
ENTRY = np.dtype([("key", "<u8"), ("band", "u1"), ("idx", "<u4")])  # packed: 13 bytes
DROP = np.dtype([("idx", "<u4"), ("keeper_shard", "<u4"), ("keeper_idx", "<u4")])
EDGE_BATCH = 8_000_000  # edges merged at a time
_LOW32 = np.uint64(0xFFFFFFFF)


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


class BucketWriter:
    """Band keys of one shard's documents, fed one text at a time; `save` writes them sorted by key."""

    def __init__(self, hasher: MinHasher, block: int = 512) -> None:
        self.hasher, self.block = hasher, block
        self._sigs: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []  # (n, bands) uint64 per block
        self._valid: list[np.ndarray] = []
        self.documents = 0

    def add(self, text: str) -> None:
        self._sigs.append(self.hasher.signature(text))
        self.documents += 1
        if len(self._sigs) >= self.block:
            self._fold()

    def _fold(self) -> None:
        if not self._sigs:
            return
        sigs = np.stack(self._sigs)
        self._sigs = []
        self._keys.append(band_keys(sigs, self.hasher.bands, self.hasher.rows))
        self._valid.append(~(sigs == np.iinfo(np.uint32).max).all(axis=1))  # no words: never a duplicate

    def save(self, path: Path) -> int:
        """Write `path` (ENTRY records sorted by key); returns the number of entries."""
        self._fold()
        bands = self.hasher.bands
        keys = np.concatenate(self._keys) if self._keys else np.zeros((0, bands), dtype=np.uint64)
        valid = np.concatenate(self._valid) if self._valid else np.zeros(0, dtype=bool)
        self._keys, self._valid = [], []
        docs = np.flatnonzero(valid)
        flat = keys[docs].ravel()
        order = np.argsort(flat, kind="stable")
        out = np.empty(len(flat), dtype=ENTRY)
        out["key"] = flat[order]
        out["band"] = np.tile(np.arange(bands, dtype=np.uint8), len(docs))[order]
        out["idx"] = np.repeat(docs.astype(np.uint32), bands)[order]
        _save(path, out)
        return len(out)


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph with edges u[i]-v[i] (uint64 ids): its nodes, sorted, and the
    smallest node of each one's component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.unique(np.concatenate([u, v]))
    n = len(nodes)
    if n == 0:
        return nodes, nodes.copy()
    iu, iv = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
    graph = coo_matrix((np.ones(len(iu), dtype=np.int8), (iu, iv)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)  # nodes are sorted: a label's first node is its smallest
    return nodes, nodes[first[labels]]


def bucket_file(work: Path, shard: str) -> Path:
    return work / "p1" / f"{shard}.lsh.npy"


def edge_file(work: Path, p: int) -> Path:
    return work / "p2" / "edges" / f"{p:05d}.npy"


def drop_file(work: Path, shard: str) -> Path:
    return work / "p2" / "drops" / f"{shard}.npy"


def _key_bounds(p: int, partitions: int) -> tuple[int, int | None]:
    lo = p * (1 << 64) // partitions
    return lo, None if p == partitions - 1 else (p + 1) * (1 << 64) // partitions


def cluster_partition(p: int, work: str) -> int:
    """Star edges (member, smallest member) of the components among documents sharing a bucket whose key
    falls in partition p (of work/p2/plan.json); written to work/p2/edges/<p>.npy as a (2, E) uint64 array.
    Returns E."""
    target = edge_file(Path(work), p)
    if target.exists():
        return int(np.load(target, mmap_mode="r").shape[1])
    plan = json.loads((Path(work) / "p2" / "plan.json").read_text())
    lo, hi = _key_bounds(p, plan["partitions"])
    keys, bands, gids = [], [], []
    for s, name in enumerate(plan["shards"]):
        f = bucket_file(Path(work), name)
        entries = np.load(f, mmap_mode="r")
        column = entries["key"]
        a = int(np.searchsorted(column, np.uint64(lo), side="left"))
        b = len(column) if hi is None else int(np.searchsorted(column, np.uint64(hi), side="left"))
        if b > a:
            part = np.array(entries[a:b])
            keys.append(part["key"])
            bands.append(part["band"])
            gids.append((np.uint64(s) << np.uint64(32)) | part["idx"].astype(np.uint64))
        del entries, column
    edges = np.zeros((2, 0), dtype=np.uint64)
    if keys:
        key, band, gid = np.concatenate(keys), np.concatenate(bands), np.concatenate(gids)
        del keys, bands, gids
        order = np.lexsort((gid, key, band))
        key, band, gid = key[order], band[order], gid[order]
        del order
        same = (band[1:] == band[:-1]) & (key[1:] == key[:-1])
        u, v = gid[:-1][same], gid[1:][same]
        del key, band, gid, same
        if len(u):
            nodes, roots = components(u, v)
            moved = nodes != roots
            edges = np.stack([nodes[moved], roots[moved]])
    _save(target, edges)
    return int(edges.shape[1])


def merge_edges(edge_files: list[Path], batch_edges: int = EDGE_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Components over all edge lists, merged batch by batch: (nodes sorted, smallest node of each one's
    component). Memory: the documents that have a duplicate plus one batch."""
    nodes = roots = np.zeros(0, dtype=np.uint64)
    pending: list[np.ndarray] = []
    size = 0

    def fold() -> None:
        nonlocal nodes, roots, pending, size
        if not pending:
            return
        moved = nodes != roots
        u = np.concatenate([nodes[moved], *(e[0] for e in pending)])
        v = np.concatenate([roots[moved], *(e[1] for e in pending)])
        pending, size = [], 0
        nodes, roots = components(u, v)

    for f in edge_files:
        e = np.load(f)
        if e.shape[1]:
            pending.append(e)
            size += e.shape[1]
        if size >= batch_edges:
            fold()
    fold()
    return nodes, roots


def write_drops(nodes: np.ndarray, roots: np.ndarray, drop_files: list[Path]) -> None:
    """Per shard (in shard order), the documents to drop and the one each duplicates (DROP records)."""
    shard_of = (nodes >> np.uint64(32)).astype(np.int64)
    bounds = np.searchsorted(shard_of, np.arange(len(drop_files) + 1))
    for s, path in enumerate(drop_files):
        n, r = nodes[bounds[s] : bounds[s + 1]], roots[bounds[s] : bounds[s + 1]]
        moved = n != r
        out = np.empty(int(moved.sum()), dtype=DROP)
        out["idx"] = (n[moved] & _LOW32).astype(np.uint32)
        out["keeper_shard"] = (r[moved] >> np.uint64(32)).astype(np.uint32)
        out["keeper_idx"] = (r[moved] & _LOW32).astype(np.uint32)
        _save(path, out)


def auto_partitions(entries: int, partition_entries: int) -> int:
    return max(1, math.ceil(entries / max(1, partition_entries)))


def global_dedup(
    names: list[str],
    documents: list[int],
    entries: list[int],
    work: Path,
    partitions: int | None,
    partition_entries: int,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> dict:
    """Cluster the buckets that phase 1 wrote (`bucket_file`: work/p1/<name>.lsh.npy); writes `drop_file`s
    (work/p2/drops/<name>.npy) and returns the stats (also work/p2/dedup.json, the completion marker).
    Resumable per partition."""
    p2 = work / "p2"
    target = p2 / "dedup.json"
    if target.exists():
        return json.loads(target.read_text())
    total = sum(entries)
    n_parts = partitions or auto_partitions(total, partition_entries)
    plan = {"partitions": n_parts, "shards": names, "entries": total}
    plan_file = p2 / "plan.json"
    if plan_file.exists() and json.loads(plan_file.read_text()) != plan:
        import shutil

        log.info("dedup: the partition plan changed; clustering again")
        shutil.rmtree(p2)
    (p2 / "edges").mkdir(parents=True, exist_ok=True)
    (p2 / "drops").mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan_file, plan)
    edge_files = [edge_file(work, p) for p in range(n_parts)]
    log.info("dedup: %d band entries of %d documents in %d partition(s)", total, sum(documents), n_parts)
    run_tasks(cluster_partition, [(p, str(work)) for p in range(n_parts)], executor, workers, ray_address,
              "dedup partitions")
    nodes, roots = merge_edges(edge_files)
    write_drops(nodes, roots, [drop_file(work, n) for n in names])
    _, sizes = np.unique(roots, return_counts=True)
    histogram = Counter(sizes.tolist())
    singletons = sum(documents) - len(nodes)
    if singletons:
        histogram[1] += singletons
    result = {
        "clusters": len(sizes),
        "cluster_size_histogram": {int(k): int(v) for k, v in sorted(histogram.items())},
        "duplicates": int(len(nodes) - len(sizes)),
        "partitions": n_parts,
        "band_entries": total,
    }
    atomic_write_json(target, result, indent=None)
    return result


def read_drops(path: Path) -> np.ndarray:
    """The DROP records of one shard, sorted by index."""
    return np.load(path)
