"""Shared pieces of the code tasks: the unbiased pass@k estimator, code-block extraction, sandbox runs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed stably."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def extract_code(response: str) -> str:
    """The code in a chat answer: the longest fenced block (```python ... ```), else the whole text."""
    blocks = re.findall(r"```(?:[\w+-]*)\n(.*?)```", response, flags=re.DOTALL)
    if not blocks:
        unterminated = re.search(r"```(?:[\w+-]*)\n(.*)$", response, flags=re.DOTALL)
        return unterminated.group(1) if unterminated else response
    return max(blocks, key=len)


def run_results(programs: Sequence[str], timeout_s: float = 10.0) -> list[Any]:
    """Sandbox results (`infir.sandbox.SandboxResult`: status, reason, detail) of each program."""
    from infir.sandbox import run_programs

    return run_programs(list(programs), timeout_s=timeout_s)


def run_tests(programs: Sequence[str], timeout_s: float = 10.0) -> list[str]:
    """Sandbox status (passed/failed/timeout/error) of each program. Passed means its tests ran to the end
    (the sandbox harness's closing step ran): exiting early with code 0 is a failure."""
    return [r.status for r in run_results(programs, timeout_s)]


def code_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """pass@1 (and pass@k for every k in 1, 10, 100 that the sample count allows)."""
    if not rows:
        return {"pass@1": 0.0, "n": 0.0}
    n_min = min(int(r["n"]) for r in rows)
    out: dict[str, float] = {}
    for k in (1, 10, 100):
        if k <= n_min:
            out[f"pass@{k}"] = float(np.mean([pass_at_k(int(r["n"]), int(r["n_correct"]), k) for r in rows]))
    out["n"] = float(len(rows))
    return out


def grade_programs(programs: Sequence[str], timeout_s: float = 10.0) -> dict[str, Any]:
    """A graded row: statuses, why each failed program did not pass (`reasons`: assertion, exception, timeout,
    early_exit, memory, output_limit, ...; None for a pass), the first program's failure detail, pass counts."""
    results = run_results(programs, timeout_s)
    statuses = [r.status for r in results]
    passed = sum(s == "passed" for s in statuses)
    return {"statuses": statuses, "reasons": [r.reason for r in results], "failure": results[0].detail,
            "n": len(statuses), "n_correct": passed, "correct": statuses[0] == "passed"}
