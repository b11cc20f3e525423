"""`infir synth` command. Imports heavy modules inside the function."""

from __future__ import annotations

from infir.utils.notbuilt import not_built


def synth_command() -> None:
    """Synthesise SFT data (not built yet)."""
    not_built("infir synth", "issue 6")
