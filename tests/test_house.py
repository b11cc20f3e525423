"""The house (README "Layout"): rooms depend downward only and no module imports in a circle.

The contracts live in pyproject.toml ([tool.importlinter]); import-linter checks them on every test run
(in a subprocess: its CLI reconfigures logging for the whole process).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_layers_and_no_circles() -> None:
    pytest.importorskip("importlinter")
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"an import breaks the house contracts in pyproject.toml:\n{proc.stdout[-3000:]}"
