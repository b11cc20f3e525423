"""bench/train_throughput.py --quick runs on CPU and prints its result line (figures are not asserted)."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"


def test_quick_bench_prints_result_line_and_losses_match_hf(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [str(BENCH), "--quick", "--steps", "2", "--match-steps", "3"])
    runpy.run_path(str(BENCH), run_name="__main__")
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"result: tokens_per_s=\d+ mfu=[\d.]+ speedup_vs_hf_compile=(nan|[\d.]+)", out[-1])
    match = next(line for line in out if line.startswith("loss match"))
    assert float(re.search(r"max \|diff\| ([\d.e+-]+)", match).group(1)) < 1e-4  # fp32 on CPU
