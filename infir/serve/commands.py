"""`infir serve`, `infir chat`, `infir export`. Imports heavy modules inside the functions."""

from __future__ import annotations

from infir.utils.notbuilt import not_built


def serve_command() -> None:
    """Serve a model (not built yet)."""
    not_built("infir serve", "issue 8")


def chat_command() -> None:
    """Chat with a model (not built yet)."""
    not_built("infir chat", "issue 8")


def export_command() -> None:
    """Export a model (not built yet)."""
    not_built("infir export", "issue 8")
