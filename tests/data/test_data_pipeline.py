"""The curation pipeline end to end: bad input is quarantined and counted, the invariant holds,
a killed run resumes without loss or duplication, local and Ray executors write identical output."""

from __future__ import annotations

import gzip
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infir.data.config import CurateConfig
from infir.data.pipeline import run_curate
from infir.utils.io import read_jsonl

WORDS = (
    "the of and to in that is was he for it with as his on be at by this had not are but from or have an they "
    "which one you were her all she there would their we him been has when who will more no if out so said what "
    "up its about into than them can only other new some could time these two may then do first any my now such "
    "like our over man me even most made after also did many before must through back years where much your way "
    "well down should because each just those people how too little state good very make world still own see men "
    "work long get here between both life being under never day same another know while last might us great old"
).split()


def _doc(rng: random.Random, n_sentences: int = 8) -> str:
    sents = []
    for _ in range(n_sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(10, 18))]
        sents.append(" ".join(words).capitalize() + ".")
    return "\n".join(" ".join(sents[i : i + 2]) for i in range(0, len(sents), 2))


def _write_corpus(folder: Path, n_files: int = 4, per_file: int = 25, seed: int = 0) -> int:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in range(n_files):
        with gzip.open(folder / f"part{f}.jsonl.gz", "wt") as fh:
            for i in range(per_file):
                fh.write(json.dumps({"id": f"d{f}-{i}", "text": _doc(rng), "meta_field": i}) + "\n")
                n += 1
    return n


def _outputs(out: Path) -> dict[str, list[dict]]:
    return {p.name: list(read_jsonl(p)) for p in sorted(out.glob("*.jsonl.gz"))}


def test_bad_input_is_quarantined_and_counted(tmp_path):
    inp = tmp_path / "in"
    good = _write_corpus(inp, n_files=1, per_file=10)
    rng = random.Random(1)
    dup = _doc(rng)
    with open(inp / "bad.jsonl", "wb") as f:
        f.write(b'{"id": "ok1", "text": ' + json.dumps(dup).encode() + b"}\n")
        f.write(b'{"id": "ok2", "text": ' + json.dumps(dup).encode() + b"}\n")  # exact duplicate of ok1
        f.write(b"{not json\n")
        f.write(b'{"id": "u", "text": "caf\xff"}\n')  # invalid UTF-8
        f.write(b'{"id": "m", "body": "no text field"}\n')
        f.write(b'{"id": "e", "text": "   "}\n')
        f.write(b'{"id": "big", "text": "' + b"word " * 300_000 + b'"}\n')
    full = gzip.compress(b"".join(json.dumps({"text": _doc(rng)}).encode() + b"\n" for _ in range(50)))
    (inp / "truncated.jsonl.gz").write_bytes(full[: len(full) // 2])
    cfg = CurateConfig(max_doc_chars=1_000_000)
    stats = run_curate(cfg, [inp], tmp_path / "out")
    q = stats["quarantined_by_reason"]
    assert q["malformed_json"] == 1 and q["invalid_utf8"] == 1 and q["missing_text"] == 1
    assert q["empty_text"] == 1 and q["too_large"] == 1 and q["truncated_or_corrupt_file"] == 1
    assert stats["input_records"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
    assert stats["dropped"].get("minhash_duplicate") == 1
    assert stats["kept"] >= good  # truncated file's readable lines are kept too
    kept_ids = {r["id"] for rows in _outputs(tmp_path / "out").values() for r in rows}
    assert "ok1" in kept_ids and "ok2" not in kept_ids
    rejects = [r for p in (tmp_path / "out" / "rejects").glob("*.jsonl.gz") for r in read_jsonl(p)]
    assert len(rejects) == sum(stats["dropped"].values()) + stats["quarantined"]
    assert all(r["reason"] for r in rejects)
    # every kept record keeps its id, source and metadata
    row = next(rows[0] for name, rows in _outputs(tmp_path / "out").items() if "part0" in name)
    assert (
        row["id"] == "d0-0"
        and row["source"].endswith("part0.jsonl.gz")
        and row["metadata"]["meta_field"] == 0
    )
    assert [f["step"] for f in stats["funnel"]][:2] == ["read", "heuristics"]


def _run_cli(inp: Path, out: Path, *extra: str) -> subprocess.Popen:
    code = (
        "import sys; from pathlib import Path; from infir.data.config import CurateConfig;"
        "from infir.data.pipeline import run_curate;"
        f"run_curate(CurateConfig(), [Path({str(inp)!r})], Path({str(out)!r}))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    inp = tmp_path / "in"
    n = _write_corpus(inp, n_files=6, per_file=80)
    reference = run_curate(CurateConfig(), [inp], tmp_path / "ref")
    out = tmp_path / "out"
    proc = _run_cli(inp, out)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / ".work" / "p1").glob("*.done")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / ".work" / "p1").glob("*.done")))
    assert 0 < done_before < 6, "the run should have been killed part-way"
    stats = run_curate(CurateConfig(), [inp], out)
    assert stats["input_records"] == n == reference["input_records"]
    assert _outputs(out) == _outputs(tmp_path / "ref")
    ids = [r["id"] for rows in _outputs(out).values() for r in rows]
    assert len(ids) == len(set(ids)) == stats["kept"]


def test_two_workers_and_ray_match_one_worker(tmp_path):
    pytest.importorskip("ray")
    inp = tmp_path / "in"
    _write_corpus(inp, n_files=3, per_file=10)
    one = run_curate(CurateConfig(), [inp], tmp_path / "one")
    two = run_curate(CurateConfig(), [inp], tmp_path / "two", workers=2)
    import ray

    try:
        viaray = run_curate(CurateConfig(), [inp], tmp_path / "ray", executor="ray", workers=2)
    finally:
        ray.shutdown()
    assert one == two == viaray
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two") == _outputs(tmp_path / "ray")


def test_cli_curate_with_config_and_benchmarks(tmp_path, shared_data):
    inp = tmp_path / "in"
    _write_corpus(inp, n_files=1, per_file=10)
    gsm = json.loads(open(shared_data / "gsm8k" / "test.jsonl").readline())
    with open(inp / "leak.jsonl", "w") as f:  # a web page that quotes a GSM8K test question
        f.write(json.dumps({"id": "leak", "text": _doc(random.Random(5)) + "\n" + gsm["question"]}) + "\n")
    cfg = tmp_path / "curate.yaml"
    cfg.write_text("curate:\n  decontam:\n    benchmarks: [gsm8k]\n  minhash:\n    bands: 20\n    rows: 5\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "infir.cli", "data", "curate", "--config", str(cfg), "--input", str(inp),
           "--output", str(out), "--benchmarks", str(shared_data)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    stats = json.loads((out / "stats.json").read_text())
    assert summary["input_records"] == stats["input_records"] == 11
    assert stats["dropped"] == {"contaminated_gsm8k": 1}
    leak = [r for p in (out / "rejects").glob("*.jsonl.gz") for r in read_jsonl(p) if r["id"] == "leak"]
    assert leak[0]["metadata"]["contamination"]["benchmark"] == "gsm8k"
