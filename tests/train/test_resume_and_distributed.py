"""Real processes: a run killed with SIGKILL resumes to the same losses; 2 ranks (FSDP2, gloo) match 1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["model=micro", "seq_len=32", "micro_batch_size=2", "global_batch_size=8", "optimizer.lr=3e-3",
            "schedule.warmup_steps=1", "schedule.kind=cosine", "logging.tensorboard=false"]


def _cmd(data: Path, out: Path, steps: int, checkpoint_interval: int) -> list[str]:
    sets = [*SETTINGS, f"max_steps={steps}", f"checkpoint.interval={checkpoint_interval}"]
    return ["train", "pretrain", "--data-dir", str(data), "--output", str(out),
            *[x for s in sets for x in ("--set", s)]]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "INFIR_PROGRESS": "0", **extra}


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _reference(data: Path, out: Path, steps: int) -> dict[int, float]:
    """The same run in this process (one thread, like the subprocesses)."""
    from infir.train.commands import load_train_config
    from infir.train.pretrain import run_pretrain

    cfg = load_train_config(None, "pretrain", [*SETTINGS, f"max_steps={steps}", "checkpoint.interval=100"])
    run_pretrain(cfg, data, out, None)
    return _losses(out)


def _infir(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infir.cli", *args], cwd=REPO, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


def test_sigkilled_run_resumes_with_identical_losses(tmp_path, token_data) -> None:
    steps = 8
    reference = _reference(token_data, tmp_path / "full", steps)
    assert sorted(reference) == list(range(1, steps + 1))

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "infir.cli", *_cmd(token_data, out, steps, 3)], cwd=REPO,
                            env=_env(INFIR_TRAIN_STEP_SLEEP="0.4"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while not (out / "checkpoints" / "step_00000003").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let it get into step 4 or 5, past the checkpoint
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    logged = _losses(out)
    assert 3 <= max(logged) < steps, "the run should have been killed between the checkpoint and the end"

    resumed = _infir(_cmd(token_data, out, steps, 3))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _losses(out)
    assert sorted(after) == list(range(1, steps + 1))  # every step once
    for step in range(4, steps + 1):
        assert after[step] == pytest.approx(reference[step], rel=1e-9, abs=1e-9), step
    assert json.loads((out / "summary.json").read_text())["resumed_from"] in (3, 6)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_ranks_with_fsdp2_match_one_process(tmp_path, token_data) -> None:
    steps = 4
    one_losses = _reference(token_data, tmp_path / "one", steps)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "infir.cli",
                          *_cmd(token_data, tmp_path / "two", steps, 100)],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    two_losses = _losses(tmp_path / "two")
    assert sorted(two_losses) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        assert two_losses[step] == pytest.approx(one_losses[step], rel=1e-4), step
    assert one_losses[steps] < one_losses[1]
    assert (tmp_path / "two" / "model" / "model.safetensors").exists()
