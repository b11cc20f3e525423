"""The one code sandbox: every room that runs untrusted code (evaluation, synthesis) goes through here.

`run_program(source, ...)` / `run_programs([...])` run Python in a separate, namespaced, resource-limited
process (`runner`) and pass it only when its tests ran to the end (the harness's closing step, `harness`);
`call_function` calls a program's function on many inputs there and returns the outputs for the caller to
compare (EvalPlus grading); `init` is the program that sets up the namespaces inside the child.
"""

from infir.sandbox.runner import (
    REASONS,
    STATUSES,
    CallOutput,
    SandboxResult,
    call_function,
    isolation_mode,
    run_program,
    run_programs,
)

__all__ = ["REASONS", "STATUSES", "CallOutput", "SandboxResult", "call_function", "isolation_mode", "run_program",
           "run_programs"]
