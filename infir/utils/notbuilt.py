"""What a subcommand that is not built yet does: say so and exit non-zero, never fake output."""

from __future__ import annotations

import typer


def not_built(what: str, issue: str) -> None:
    typer.echo(f"infir: '{what}' is not built yet (tracked in {issue}).", err=True)
    raise typer.Exit(code=2)
