"""Evaluation: tasks (`tasks/`, one file per benchmark, discovered), grading (`grading`), the runner.

Entry points: `infir.eval.runner.run_eval(...)`, `infir.eval.tasks.get_task(name, mode)`,
`infir.eval.grading.extract_answer / math_equal`. Generation itself is `infir.generation`; running code
is `infir.sandbox`.
"""
