"""Curation at scale: record-range shards of one big file, partitioned global MinHash clustering equal to the
in-memory clustering for any shards / partitions / workers, and Ray through a cluster address."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infir.data.config import CurateConfig, InputSpec, MinHashConfig
from infir.data.dedup import (
    BucketWriter,
    bucket_file,
    components,
    drop_file,
    global_dedup,
    merge_edges,
    read_drops,
)
from infir.data.minhash import MinHasher, cluster
from infir.data.pipeline import run_curate
from infir.data.readers import read_path
from infir.data.shards import jsonl_spans, plan_shards
from infir.utils.io import read_jsonl

_LETTERS = random.Random(7)
VOCAB = ["".join(_LETTERS.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(3000)]
WORDS = ("the of and to in that is was he for it with as his on be at by this had not are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so said what "
         "up its about into than them can only other new some could time these two may then do first any my now").split()


def _near_duplicate_texts(n_base: int = 60, seed: int = 0) -> list[str]:
    """Random documents, their near duplicates (a few words changed), distant relatives, and texts without
    words (never duplicates); in a shuffled order so clusters span shards."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n_base):
        words = [rng.choice(VOCAB) for _ in range(rng.randint(40, 200))]
        texts.append(" ".join(words))
        for _ in range(rng.randint(0, 3)):
            texts.append(" ".join(rng.choice(VOCAB) if rng.random() < rng.uniform(0, 0.04) else w for w in words))
        texts.append(" ".join(rng.choice(VOCAB) if rng.random() < 0.3 else w for w in words))
    texts += ["", "   ", "!!! ???", "", "..."]
    rng.shuffle(texts)
    return texts


def _expected_drops(texts: list[str], hasher: MinHasher) -> dict[int, int]:
    """Document -> the document it duplicates, from the in-memory clustering (minhash.cluster)."""
    sigs = hasher.signatures(texts)
    valid = ~(sigs == np.iinfo(np.uint32).max).all(axis=1)
    roots = cluster(sigs, hasher.bands, hasher.rows, valid)
    return {i: int(r) for i, r in enumerate(roots.tolist()) if r != i}


@pytest.mark.parametrize("cut", [[0, 100], [0, 37, 38, 160, 200]])
def test_partitioned_clustering_equals_in_memory_for_any_shards_partitions_workers(tmp_path, cut):
    texts = _near_duplicate_texts()
    hasher = MinHasher()
    expected = _expected_drops(texts, hasher)
    assert len(expected) > 30 and len(set(expected.values())) > 15  # many clusters, some with several members
    bounds = [*cut, len(texts)]
    names = [f"s{k}" for k in range(len(bounds) - 1)]
    offsets = dict(zip(names, bounds, strict=False))
    results = []
    for partitions, workers in [(1, 1), (3, 1), (16, 2), (None, 1)]:
        work = tmp_path / f"w{partitions}-{workers}"
        (work / "p1").mkdir(parents=True)
        docs, entries = [], []
        for name, a, b in zip(names, bounds, bounds[1:], strict=False):
            writer = BucketWriter(hasher, block=7)  # several blocks per shard
            for t in texts[a:b]:
                writer.add(t)
            entries.append(writer.save(bucket_file(work, name)))
            docs.append(b - a)
        stats = global_dedup(names, docs, entries, work, partitions, 50, workers=workers)
        got = {}
        for name in names:
            for row in read_drops(drop_file(work, name)):
                got[offsets[name] + int(row["idx"])] = offsets[names[int(row["keeper_shard"])]] + int(row["keeper_idx"])
        assert got == expected, (partitions, workers)
        sizes = stats.pop("cluster_size_histogram")
        assert sum(int(k) * v for k, v in sizes.items()) == len(texts)
        assert stats.pop("partitions") == (partitions or -(-sum(entries) // 50))
        results.append(stats)
    assert all(r == results[0] for r in results)


def test_partition_step_resumes_and_components_take_the_smallest_member(tmp_path):
    nodes, roots = components(np.array([9, 3, 7, 20], dtype=np.uint64), np.array([3, 7, 1, 21], dtype=np.uint64))
    assert nodes.tolist() == [1, 3, 7, 9, 20, 21] and roots.tolist() == [1, 1, 1, 1, 20, 20]
    texts = _near_duplicate_texts(20, seed=3)
    hasher = MinHasher()
    (tmp_path / "p1").mkdir()
    writer = BucketWriter(hasher)
    for t in texts:
        writer.add(t)
    entries = writer.save(bucket_file(tmp_path, "only"))
    first = global_dedup(["only"], [len(texts)], [entries], tmp_path, 4, 10)
    drops = read_drops(drop_file(tmp_path, "only"))
    (tmp_path / "p2" / "dedup.json").unlink()  # as if killed after two partitions
    for f in sorted((tmp_path / "p2" / "edges").glob("*.npy"))[2:]:
        f.unlink()
    again = global_dedup(["only"], [len(texts)], [entries], tmp_path, 4, 10)
    assert again == first and np.array_equal(read_drops(drop_file(tmp_path, "only")), drops)
    edge_files = sorted((tmp_path / "p2" / "edges").glob("*.npy"))
    whole = merge_edges(edge_files)
    assert len(whole[0]) > 5
    for got, want in zip(merge_edges(edge_files, batch_edges=1), whole, strict=True):  # merged edge list by list
        assert np.array_equal(got, want)


def _jsonl_lines(rng: random.Random, n: int) -> list[bytes]:
    lines = []
    for i in range(n):
        if i % 17 == 5:
            lines.append(b"")  # blank lines count as lines
        elif i % 23 == 7:
            lines.append(b"{not json")
        else:
            row = {"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))}
            if i % 3:
                row["id"] = f"d{i}"  # the others get an id from their line number
            lines.append(json.dumps(row).encode())
    return lines


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_one_big_jsonl_file_splits_into_line_ranges_that_read_like_the_file(tmp_path, suffix):
    data = b"\n".join(_jsonl_lines(random.Random(1), 300))  # no newline at the very end
    path = tmp_path / f"big{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    whole = list(read_path(path, 2_000_000, None, InputSpec(path=str(path))))  # as a corpus input reads it
    for shard_bytes in (1, 97, 1000, 4096, 10**7):
        spans = jsonl_spans(path, shard_bytes)
        assert spans[0][1] == 1 and spans[-1][2] is None
        assert all(a[2] == b[1] for a, b in zip(spans, spans[1:], strict=False))  # contiguous, no overlap
        shards = plan_shards([path], shard_bytes)
        assert [s.name for s in shards] == sorted(s.name for s in shards)
        assert [item for s in shards for item in s.read(2_000_000)] == whole, shard_bytes
    assert len(plan_shards([path], 1000)) > 5 and len(plan_shards([path], 10**7)) == 1
    if suffix == ".jsonl":  # ranges of an uncompressed file start at their line's byte offset
        offsets = [span[0] for span in jsonl_spans(path, 1000)]
        assert all(o == 0 or data[o - 1 : o] == b"\n" for o in offsets) and offsets == sorted(set(offsets))


def test_parquet_splits_into_row_group_ranges(tmp_path):
    rng = random.Random(2)
    rows = [{"id": f"p{i}", "text": " ".join(rng.choice(WORDS) for _ in range(30))} for i in range(100)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=10)
    whole = list(read_path(path, 2_000_000, None, InputSpec(path=str(path))))  # as a corpus input reads it
    shards = plan_shards([path], 2000)
    assert 3 <= len(shards) <= 10 and [s.span[0] for s in shards][0] == 0
    assert [item for s in shards for item in s.read(2_000_000)] == whole


def _corpus_with_duplicates(path: Path, n: int = 240, seed: int = 0) -> None:
    """One JSONL.gz of web-like documents, a third of them near duplicates of earlier ones."""
    rng = random.Random(seed)
    docs: list[str] = []
    for i in range(n):
        if docs and i % 3 == 0:
            base = rng.choice(docs).split(" ")
            docs.append(" ".join(rng.choice(WORDS) if rng.random() < 0.02 else w for w in base))
        else:
            sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 18))).capitalize() + "."
                     for _ in range(8)]
            docs.append("\n".join(" ".join(sents[k : k + 2]) for k in range(0, 8, 2)))
    with gzip.open(path, "wt") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": f"d{i}", "text": d}) + "\n")


def _kept_ids(out: Path) -> list[str]:
    return [r["id"] for p in sorted(out.glob("*.jsonl.gz")) for r in read_jsonl(p)]


def test_curate_one_file_keeps_the_in_memory_decisions_for_any_shards_and_partitions(tmp_path):
    src = tmp_path / "ONE.jsonl.gz"
    _corpus_with_duplicates(src)
    # the records MinHash sees (minhash off: everything that passes the filters, in order)
    run_curate(CurateConfig(minhash=MinHashConfig(enabled=False)), [src], tmp_path / "nodedup")
    before = [r for p in sorted((tmp_path / "nodedup").glob("*.jsonl.gz")) for r in read_jsonl(p)]
    expected = _expected_drops([r["text"] for r in before], MinHasher())
    assert len(expected) > 40
    want = [r["id"] for i, r in enumerate(before) if i not in expected]
    runs = {}
    for label, cfg, workers in [
        ("one shard", CurateConfig(), 1),
        ("ranges, 5 partitions", CurateConfig(shard_mb=0.02, minhash=MinHashConfig(partitions=5)), 1),
        ("ranges, auto partitions, 2 workers", CurateConfig(shard_mb=0.03, minhash=MinHashConfig(partition_entries=300)), 2),
    ]:
        out = tmp_path / label.replace(" ", "_").replace(",", "")
        stats = run_curate(cfg, [src], out, workers=workers)
        assert _kept_ids(out) == want, label
        dup_rejects = [r for p in (out / "rejects").glob("*.jsonl.gz") for r in read_jsonl(p)
                       if r.get("reason") == "minhash_duplicate"]
        assert len(dup_rejects) == len(expected) == stats["dropped"]["minhash_duplicate"]
        stats.pop("shards")
        runs[label] = (stats, len(list(out.glob("*.jsonl.gz"))))
    stats = [s for s, _ in runs.values()]
    assert stats[1] == stats[0] == stats[2]
    assert runs["one shard"][1] == 1 and runs["ranges, 5 partitions"][1] > 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_executor_with_a_cluster_address_matches_local(tmp_path):
    """A real Ray head (`ray start --head --num-cpus 1`) and the curation driven through its address."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip("the ray CLI is not installed beside this Python")
    src = tmp_path / "ONE.jsonl.gz"
    _corpus_with_duplicates(src, n=90, seed=4)
    cfg = CurateConfig(shard_mb=0.02, minhash=MinHashConfig(partitions=3))
    local = run_curate(cfg, [src], tmp_path / "local")
    port = _free_port()
    temp = Path("/tmp") / f"ray-infir-{os.getpid()}"  # short: Ray's socket paths have a length limit
    # no token auth (Ray >= 2.52 turns it on for `ray start` when a token file exists; a driver must match)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--num-cpus", "1", "--port", str(port),
         "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--temp-dir", str(temp),
         "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()),
         "--min-worker-port", "0", "--max-worker-port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        code = (
            "import json, sys; from pathlib import Path; from infir.data.config import CurateConfig;"
            "from infir.data.pipeline import run_curate;"
            "cfg = CurateConfig.model_validate_json(sys.argv[1]);"
            "print(json.dumps(run_curate(cfg, [Path(sys.argv[2])], Path(sys.argv[3]), executor='ray')))"
        )
        remote_cfg = cfg.model_copy(update={"ray_address": f"127.0.0.1:{port}"})
        deadline = time.time() + 90
        while True:  # the head takes a few seconds to come up
            done = subprocess.run([sys.executable, "-c", code, remote_cfg.model_dump_json(), str(src),
                                   str(tmp_path / "ray")], capture_output=True, text=True, timeout=300, env=env)
            if done.returncode == 0 or time.time() > deadline or head.poll() is not None:
                break
            time.sleep(2)
        assert done.returncode == 0, done.stderr[-3000:]
        viaray = json.loads(done.stdout.strip().splitlines()[-1])
    finally:  # the head's processes share its session: end exactly those (a graceful drain would take 30 s)
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
    assert viaray == json.loads(json.dumps(local))
    assert _kept_ids(tmp_path / "ray") == _kept_ids(tmp_path / "local")
