"""The `infir` command: every room's subcommand is listed, and help works without heavy imports."""

from __future__ import annotations

import subprocess
import sys

SUBCOMMANDS = ["run", "data", "train", "synth", "eval", "vlm", "serve", "export"]


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "infir.cli", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": ""}, check=True).stdout
    for name in SUBCOMMANDS:
        assert f" {name} " in out, f"{name} missing from infir --help:\n{out}"


def test_help_does_not_import_torch() -> None:
    code = "import sys, infir.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_run_with_missing_recipe_fails_clearly(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "infir.cli", "run", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "recipe not found" in proc.stderr
