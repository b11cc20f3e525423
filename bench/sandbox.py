"""Cost of the code sandbox: namespace isolation vs a bare `python program.py` subprocess per program.

The alternative users would otherwise pick is a plain subprocess with rlimits and a timeout (evalplus-style,
our `fallback` mode); the namespace sandbox adds `unshare`, a second interpreter start (the PID-1 init) and
the mounts. Both infir modes run the verdict harness (a pass needs its closing step, see infir/sandbox); the
bare subprocess counts exit code 0, the rule a `sys.exit(0)` games (bench/verdicts.py compares verdicts). Runs HumanEval's 164 canonical solutions + tests when ../shared/data is present, else simple
assert programs. Prints programs/s for each and the ratio; the last line is `result: ...`.

    .venv/bin/python bench/sandbox.py [--n 164] [--workers 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infir.sandbox import isolation_mode, run_programs

DATA = Path(os.environ.get("INFIR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def programs(n: int) -> list[str]:
    path = DATA / "humaneval" / "HumanEval.jsonl.gz"
    if path.exists():
        rows = [json.loads(line) for line in gzip.open(path, "rt")][:n]
        return [f"{r['prompt']}{r['canonical_solution']}\n\n{r['test']}\n\ncheck({r['entry_point']})\n" for r in rows]
    return [f"def f(x):\n    return x * {i}\n\nassert f(2) == {2 * i}\n" for i in range(n)]


def bare(sources: list[str], workers: int) -> list[int]:
    def one(src: str) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "p.py").write_text(src)
            return subprocess.run([sys.executable, "p.py"], cwd=tmp, capture_output=True, timeout=10).returncode

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, sources))


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=164)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    sources = programs(args.n)
    mode = isolation_mode()
    t_bare, codes = timed(lambda: bare(sources, args.workers))
    t_fallback, fb = timed(lambda: run_programs(sources, max_workers=args.workers, isolation="fallback"))
    t_sandbox, sb = timed(lambda: run_programs(sources, max_workers=args.workers))
    n = len(sources)
    print(f"{n} programs, {args.workers} workers, isolation={mode}")
    print(f"bare subprocess : {n / t_bare:6.2f} programs/s  ({sum(c == 0 for c in codes)} exited 0)")
    print(f"fallback (guard): {n / t_fallback:6.2f} programs/s  ({sum(r.passed for r in fb)} passed)")
    print(f"sandbox ({mode}): {n / t_sandbox:6.2f} programs/s  ({sum(r.passed for r in sb)} passed)")
    print(f"result: sandbox_throughput_vs_bare_subprocess={t_bare / t_sandbox:.2f} "
          f"({n / t_sandbox:.2f} vs {n / t_bare:.2f} programs/s, isolation={mode})")


if __name__ == "__main__":
    main()
