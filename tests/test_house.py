"""The house (README "Layout"): rooms depend downward only and no module imports in a circle.

The contracts live in pyproject.toml ([tool.importlinter]); import-linter checks them on every test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_layers_and_no_circles() -> None:
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0, (
        "an import breaks the house contracts in pyproject.toml (run `lint-imports` for the details)"
    )
