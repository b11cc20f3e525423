"""`infir run`: the typed recipe (`recipe`), the stages it walks declared as data (`stages`), the runner with
its manifest and resume rules (`runner`), and the run report (`report`)."""

from infir.run.runner import run_recipe

__all__ = ["run_recipe"]
