"""The task registry: name -> Task (one small module per benchmark)."""

from __future__ import annotations

from infir.eval.tasks.base import Mode, Task


def get_task(name: str, mode: Mode = "base") -> Task:
    from infir.eval.tasks import gsm8k, humaneval, longcot, math_tasks, mbpp, mmlu, nll

    registry = {
        "gsm8k": gsm8k.TASK,
        "math": math_tasks.MATH,
        "math500": math_tasks.MATH500,
        "humaneval": humaneval.TASK,
        "mbpp": mbpp.TASK,
        "mmlu": mmlu.TASK if mode == "base" else mmlu.CHAT_TASK,
        "nll": nll.TASK,
        **longcot.TASKS,
    }
    if name not in registry:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name]


TASK_NAMES = (
    "nll",
    "gsm8k",
    "math",
    "math500",
    "humaneval",
    "mbpp",
    "mmlu",
    "aime24",
    "amc23",
    "olympiadbench",
    "gpqa",
)
