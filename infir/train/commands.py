"""`infir train ...` subcommands. Imports heavy modules inside the functions."""

from __future__ import annotations

import typer

from infir.utils.notbuilt import not_built

app = typer.Typer(no_args_is_help=True)


@app.command("todo")
def todo() -> None:
    """Placeholder until the train room's commands land."""
    not_built("infir train", "its issue")
