"""The one code sandbox: every room that runs untrusted code (evaluation, synthesis) goes through here.

`run_program(source, ...)` / `run_programs([...])` run Python in a separate, namespaced, resource-limited
process (`runner`); `init` is the program that sets up the namespaces inside the child.
"""

from infir.sandbox.runner import STATUSES, SandboxResult, isolation_mode, run_program, run_programs

__all__ = ["STATUSES", "SandboxResult", "isolation_mode", "run_program", "run_programs"]
