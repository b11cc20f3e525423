"""`infir eval` command. Imports heavy modules inside the function."""

from __future__ import annotations

from infir.utils.notbuilt import not_built


def eval_command() -> None:
    """Evaluate a model (not built yet)."""
    not_built("infir eval", "issue 7")
