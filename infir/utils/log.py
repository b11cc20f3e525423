"""Logging and progress bars (rich) with one look across infir."""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
_configured = False


def get_logger(name: str) -> logging.Logger:
    global _configured
    if not _configured:
        level = os.environ.get("INFIR_LOG_LEVEL", "INFO").upper()
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
        logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler])
        _configured = True
    return logging.getLogger(name)


def progress(transient: bool = False) -> Progress:
    """A rich progress bar; quiet when stderr is not a terminal unless INFIR_PROGRESS=1."""
    disable = not (sys.stderr.isatty() or os.environ.get("INFIR_PROGRESS") == "1")
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )
