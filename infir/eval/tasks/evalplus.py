"""HumanEval+ and MBPP+ (EvalPlus, Liu et al. 2023), graded the way EvalPlus grades: base and plus columns.

Sources, first found wins:
- the release files (github.com/evalplus/{humanevalplus,mbppplus}_release, what `evalplus` downloads) under a
  data dir: `evalplus/HumanEvalPlus-v0.1.10.jsonl.gz` / `evalplus/MbppPlus-v0.2.0.jsonl.gz` (also unversioned
  names, and `.jsonl` as evalplus caches them). Rows: task_id, prompt, entry_point, canonical_solution,
  base_input, plus_input, atol (+ contract; MBPP+ may carry assertion);
- the hub datasets `evalplus/humanevalplus` and `evalplus/mbppplus` (or a local copy of their rows in
  `humanevalplus/test.jsonl` / `mbppplus/test.jsonl`), whose `test` field is a script with every input and
  expected output written in (base and plus inputs merged).

Grading of release rows (EvalPlus's `evaluate`, its rules reimplemented here):
- the canonical solution runs once per task in the sandbox on every input; its outputs are the expected ones
  and its per-input times set the limits: max(MIN_TIME_LIMIT_S, GT_TIME_LIMIT_FACTOR x time), the whole run
  capped at PER_TASK_TIMEOUT_S per input set (EvalPlus's defaults: 4 s, 4x, 60 s);
- the candidate (sanitised like EvalPlus: imports and what the entry point depends on) runs in the sandbox
  (`infir.sandbox.call_function`) on base then plus inputs; each output comes back and is compared here:
  exact equality, else for floats `numpy.allclose(rtol=1e-7, atol)` with atol = the row's atol, or 1e-6 when
  that is 0 and the expected value is a float or a list/tuple of floats; same type and length required; the
  special oracles (HumanEval/32 find_zero checked by |poly(x)| <= atol; MBPP set-equality tasks, "not None"
  tasks, and Mbpp/164, 295, 558, 581). It stops at the first wrong output (EvalPlus's fast check);
- base passes when every base output matches; plus when base and plus both do (EvalPlus's "plus" column).
Since the expected outputs never enter the sandbox and are compared here, an object whose `==` is always true
or a program reading the expected values from memory cannot pass (it can with in-process asserts).

Hub rows are scripts: plus = the `test` script, base = HumanEval's original tests (openai_humaneval, from the
same data dir or the hub) / MBPP's original `test_list`; both go through the sandbox's run-to-the-end verdict.

Metrics: pass@k of the plus column ("pass@1", the headline) and of the base column ("base_pass@1").
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infir.eval.tasks.base import Mode, Sample, Source, Task, limit_rows
from infir.eval.tasks.code import code_metrics, extract_code

HUMANEVAL_PLUS_VERSION = "v0.1.10"
MBPP_PLUS_VERSION = "v0.2.0"
MIN_TIME_LIMIT_S = 4.0
GT_TIME_LIMIT_FACTOR = 4.0
PER_TASK_TIMEOUT_S = 60.0
MEMORY_MB = 4096  # EvalPlus's default cap (EVALPLUS_MAX_MEMORY_BYTES)
GT_TIME_LIMIT_S = 60.0  # the canonical solution's own per-input limit (a broken release row fails loudly)
SCRIPT_TIMEOUT_S = 60.0  # hub rows: the whole test script

# EvalPlus's prompts (evalplus/codegen.py, provider/utility.py).
CHAT_INSTRUCTION = (
    "Please provide a self-contained Python script that solves the following problem in a markdown code block:"
)
GENERIC_STOPS = ["<|endoftext|>", "<|endofmask|>", "</s>", "\nif __name__", "\ndef main(", "\nprint("]
BASE_STOPS = {
    "humaneval": GENERIC_STOPS + ["\ndef ", "\nclass ", "\nimport ", "\nfrom ", "\nassert "],
    "mbpp": GENERIC_STOPS + ['\n"""', "\nassert"],
}

# Special oracles (facts from EvalPlus's evalplus/eval/_special_oracle.py).
MBPP_SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
               "intersection_array", "find_dissimilar", "Diff"}
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}


def _release_files(folder: str, name: str, version: str) -> tuple[str, ...]:
    return (f"evalplus/{name}.jsonl.gz", f"evalplus/{name}-{version}.jsonl.gz", f"evalplus/{name}.jsonl",
            f"evalplus/{name}-{version}.jsonl", f"{folder}/test.jsonl")


HUMANEVAL_PLUS_SOURCE = Source(
    "HumanEval+", files={"test": _release_files("humanevalplus", "HumanEvalPlus", HUMANEVAL_PLUS_VERSION)},
    hub="evalplus/humanevalplus",
)
MBPP_PLUS_SOURCE = Source(
    "MBPP+", files={"test": _release_files("mbppplus", "MbppPlus", MBPP_PLUS_VERSION)}, hub="evalplus/mbppplus",
)


# ---------------------------------------------------------------------------------------------------------------
# MBPP+ inputs: the release stores them as JSON lists; EvalPlus turns some back into tuples, sets and complex
# numbers per task before calling (evalplus/data/mbpp.py, mbpp_deserialize_inputs). The same rules, as a table.
# ---------------------------------------------------------------------------------------------------------------


def _tuples_deep(x: Any) -> Any:
    return tuple(_tuples_deep(v) for v in x) if isinstance(x, list) else x


def _all_args_tuple(inp: list) -> list:
    return [tuple(a) for a in inp]


def _all_args_list_of_tuples(inp: list) -> list:
    return [[tuple(v) for v in a] for a in inp]


_MBPP_INPUT_RULES: dict[int, Any] = {}
for _ids, _rule in (
    ((2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740, 744, 809),
     _all_args_tuple),
    ((63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780), _all_args_list_of_tuples),
    ((75, 413, 444, 753), lambda inp: [[tuple(v) for v in inp[0]], inp[1]]),
    ((106, 750), lambda inp: [inp[0], tuple(inp[1])]),
    ((115,), lambda inp: [[set(v) if isinstance(v, list) and v else {} for v in inp[0]]]),
    ((124,), lambda inp: (float(inp[0]), complex(inp[1]))),
    ((250, 405, 446, 617, 720, 763, 808), lambda inp: [tuple(inp[0]), *inp[1:]]),
    ((259, 401, 445), lambda inp: [tuple(tuple(v) for v in a) for a in inp]),
    ((278,), lambda inp: [tuple(tuple(v) if isinstance(v, list) else v for v in inp[0])]),
    ((307,), lambda inp: [tuple(inp[0]), *inp[1:]]),
    ((722,), lambda inp: [{k: tuple(v) for k, v in inp[0].items()}, *inp[1:]]),
    ((252,), lambda inp: [complex(inp[0])]),
    ((580, 615, 791), _tuples_deep),
):
    for _id in _ids:
        _MBPP_INPUT_RULES[_id] = _rule


def mbpp_inputs(task_id: str, inputs: list) -> list:
    """MBPP+ inputs of `task_id` ("Mbpp/N") with the per-task types EvalPlus restores."""
    rule = _MBPP_INPUT_RULES.get(int(str(task_id).rsplit("/", 1)[-1]))
    return [rule(inp) for inp in inputs] if rule else inputs


# ---------------------------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Problem:
    task_id: str
    dataset: str  # "humaneval" | "mbpp"
    prompt: str  # what the model completes / is asked to solve
    entry_point: str
    canonical: str  # the full reference program (prompt + canonical_solution)
    atol: float = 0.0
    base_inputs: list | None = None  # release rows
    plus_inputs: list | None = None
    base_script: str | None = None  # hub rows
    plus_script: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _entry_from_test(test: str) -> str:
    m = re.search(r"assertion\(\s*([A-Za-z_]\w*)\s*\(\*inp\)", test) or re.search(
        r"assert\s+(?:not\s+)?\(?\s*(?:set\(|math\.isclose\(|abs\()?\s*([A-Za-z_]\w*)\s*\(", test)
    if not m:
        raise ValueError("cannot find the entry point in the test")
    return m.group(1)


def _problem(row: dict[str, Any], dataset: str, base_tests: dict[str, str] | None) -> Problem:
    if "base_input" in row:  # release row
        inputs = (row["base_input"], row["plus_input"])
        if dataset == "mbpp":
            inputs = (mbpp_inputs(row["task_id"], inputs[0]), mbpp_inputs(row["task_id"], inputs[1]))
        return Problem(str(row["task_id"]), dataset, row["prompt"], row["entry_point"],
                       row["prompt"] + row["canonical_solution"], float(row.get("atol") or 0.0),
                       base_inputs=list(inputs[0]), plus_inputs=list(inputs[1]))
    if "test" not in row:
        raise ValueError(f"{row.get('task_id')}: neither an EvalPlus release row (base_input/plus_input) nor a "
                         "hub row (test)")
    if dataset == "humaneval":
        task_id = str(row["task_id"])
        base = (base_tests or {}).get(task_id)
        if base is None:
            raise FileNotFoundError(f"{task_id}: the base column of hub-format HumanEval+ rows needs HumanEval's "
                                    "original tests (humaneval/HumanEval.jsonl.gz in the data dir, or the hub)")
        return Problem(task_id, dataset, row["prompt"], row["entry_point"], row["prompt"] + row["canonical_solution"],
                       base_script=base, plus_script=row["test"])
    task_id = f"Mbpp/{int(str(row['task_id']).rsplit('/', 1)[-1])}"
    tests = list(row["test_list"])
    entry = _entry_from_test(row["test"]) if "assertion(" in row["test"] else _entry_from_test(tests[0])
    prompt = f'"""\n{row["prompt"]}\n{tests[0]}\n"""\n'
    imports = "\n".join(row.get("test_imports") or [])
    return Problem(task_id, dataset, prompt, entry, row["code"], base_script=f"{imports}\n" + "\n".join(tests),
                   plus_script=row["test"])


_PROBLEMS: dict[tuple[str, str], list[Problem]] = {}
_PROBLEMS_LOCK = threading.Lock()


def problems(dataset: str, data_dir: Path | None) -> list[Problem]:
    """Every problem of HumanEval+ ("humaneval") or MBPP+ ("mbpp"), read once per process."""
    key = (dataset, str(data_dir))
    with _PROBLEMS_LOCK:
        if key not in _PROBLEMS:
            source = HUMANEVAL_PLUS_SOURCE if dataset == "humaneval" else MBPP_PLUS_SOURCE
            rows = source.rows(data_dir, "test")
            base_tests = None
            if dataset == "humaneval" and rows and "base_input" not in rows[0]:
                from infir.eval.tasks.humaneval import SOURCE as HUMANEVAL

                base_tests = {r["task_id"]: r["test"] + f"\n\ncheck({r['entry_point']})\n"
                              for r in HUMANEVAL.rows(data_dir, "test")}
            _PROBLEMS[key] = [_problem(r, dataset, base_tests) for r in rows]
        return _PROBLEMS[key]


# ---------------------------------------------------------------------------------------------------------------
# Prompts and the candidate program
# ---------------------------------------------------------------------------------------------------------------


def _load(dataset: str):
    def load(data_dir: Path | None, mode: Mode, limit: int | None) -> list[Sample]:
        samples = []
        for p in limit_rows(problems(dataset, data_dir), limit):
            if mode == "base":
                prompt: Any = p.prompt.strip() + "\n"
            else:
                prompt = [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n```\n{p.prompt.strip()}\n```\n"}]
            samples.append(Sample(id=p.task_id, prompt=prompt, reference=p.task_id,
                                  stop=BASE_STOPS[dataset] if mode == "base" else [],
                                  meta={"problem": p, "mode": mode}))
        return samples

    return load


def _parse_prefix(code: str) -> ast.Module | None:
    """The AST of `code`, or of its longest prefix of whole lines that parses (a completion cut mid-way)."""
    lines = code.splitlines()
    for end in range(len(lines), max(0, len(lines) - 200) - 1, -1):
        try:
            return ast.parse("\n".join(lines[:end]))
        except (SyntaxError, ValueError):
            continue
    return None


def sanitize(code: str, entry_point: str) -> str:
    """What EvalPlus keeps of a solution: imports, plus the definitions and module-level assignments the entry
    point needs (transitively). Example calls, prints, asserts and `if __name__ == "__main__":` blocks go.
    Code that does not parse, or lacks the entry point, is returned unchanged (it then fails on its own)."""
    tree = _parse_prefix(code)
    if tree is None:
        return code
    defined: dict[str, list[int]] = {}
    for i, node in enumerate(tree.body):
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        for name in names:
            defined.setdefault(name, []).append(i)
    if entry_point not in defined:
        return code
    keep = {i for i, node in enumerate(tree.body) if isinstance(node, (ast.Import, ast.ImportFrom))}
    todo = [entry_point]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for i in defined.get(name, []):
            keep.add(i)
            todo += [n.id for n in ast.walk(tree.body[i]) if isinstance(n, ast.Name) and n.id in defined]
    return "\n\n".join(ast.unparse(tree.body[i]) for i in sorted(keep)) + "\n"


def solution(sample: Sample, completion: str) -> str:
    """The program EvalPlus would run for this completion (prompt + completion, or the reply's code)."""
    p: Problem = sample.meta["problem"]
    if sample.meta.get("mode") == "chat":
        code = extract_code(completion)
        if f"def {p.entry_point}" not in code:
            code = p.prompt + code
    else:
        code = p.prompt.strip() + "\n" + completion
    return sanitize(code, p.entry_point)


# ---------------------------------------------------------------------------------------------------------------
# Expected outputs (the canonical solution, run once per task) and the comparison
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Truth:
    outputs: list[Any]
    seconds: list[float]


_TRUTH: dict[str, _Truth] = {}
_TRUTH_LOCKS: dict[str, threading.Lock] = {}
_TRUTH_GUARD = threading.Lock()


def _cache_dir() -> Path:
    root = os.environ.get("INFIR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "infir")
    return Path(root) / "evalplus"


def ground_truth(p: Problem) -> tuple[_Truth, _Truth]:
    """Expected outputs and per-input times of the canonical solution (base, plus): memory + disk cache."""
    from infir.sandbox import call_function
    from infir.sandbox.harness import decode, encode

    inputs = (p.base_inputs or []) + (p.plus_inputs or [])
    key = hashlib.sha256(json.dumps([p.dataset, p.entry_point, p.canonical, encode(inputs)],
                                    sort_keys=True).encode()).hexdigest()
    with _TRUTH_GUARD:
        lock = _TRUTH_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _TRUTH:
            path = _cache_dir() / f"{key}.json"
            truth = None
            if path.exists():
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    truth = _Truth(decode(data["outputs"]), [float(t) for t in data["seconds"]])
                except (ValueError, KeyError, TypeError):
                    truth = None
            if truth is None or len(truth.outputs) != len(inputs):
                result = call_function(p.canonical, p.entry_point, inputs, [GT_TIME_LIMIT_S] * len(inputs),
                                       timeout_s=min(600.0, GT_TIME_LIMIT_S + 2.0 * len(inputs)),
                                       memory_mb=MEMORY_MB)
                bad = [(i, o) for i, o in enumerate(result.outputs or []) if o.status != "ok"]
                if result.status != "passed" or bad:
                    where = f"input {bad[0][0]}: {bad[0][1].status} {bad[0][1].detail}" if bad else \
                        f"{result.reason}: {result.detail}"
                    raise RuntimeError(f"{p.task_id}: the canonical solution itself fails ({where}); the release "
                                       f"file is broken or was not made for this Python\n{result.stderr[-1000:]}")
                outputs = [o.value for o in result.outputs or []]
                truth = _Truth(outputs, [o.seconds for o in result.outputs or []])
                try:
                    from infir.utils.io import atomic_write_json

                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_json(path, {"task_id": p.task_id, "outputs": encode(outputs, opaque=True),
                                             "seconds": truth.seconds}, indent=None)
                except OSError:
                    pass  # a read-only home only costs a recomputation next time
            if p.dataset == "mbpp" and p.entry_point in MBPP_NOT_NONE:
                truth = _Truth([o is not None for o in truth.outputs], truth.seconds)
            _TRUTH[key] = truth
        truth = _TRUTH[key]
    n = len(p.base_inputs or [])
    return _Truth(truth.outputs[:n], truth.seconds[:n]), _Truth(truth.outputs[n:], truth.seconds[n:])


def _is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(v, float) for v in x)


def _poly(xs: list, x: float) -> float:
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _pyramid_surface(base_edge: float, height: float) -> int:
    """Mbpp/581's alternative reading: height is the pyramid's, not the faces' (rounded total surface)."""
    slant = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 2 * base_edge * slant)


def _digit_distance(a: int, b: int) -> int:
    """Mbpp/558's alternative reading: pad the shorter number with leading zeros."""
    sa, sb = str(a), str(b)
    width = max(len(sa), len(sb))
    return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(width), sb.zfill(width), strict=True))


def output_matches(dataset: str, entry_point: str, inp: Any, out: Any, exp: Any, atol: float) -> tuple[bool, float]:
    """EvalPlus's comparison of one output; returns (match, atol), the atol to use for the next input (EvalPlus
    raises a zero atol to 1e-6 at the first float output and keeps it for the rest of the run)."""
    try:
        exact = out == exp
        if dataset == "mbpp":
            if entry_point == "are_equivalent":  # Mbpp/164: any answer is accepted
                exact = True
            elif entry_point == "sum_div":  # Mbpp/295
                exact = exact or out == 0
            elif entry_point == "surface_Area":  # Mbpp/581
                exact = exact or abs(out - _pyramid_surface(*inp)) <= atol
            elif entry_point == "digit_distance_nums":  # Mbpp/558
                exact = exact or out == _digit_distance(*inp)
            elif entry_point in MBPP_SET_EQ:
                exact = set(out) == set(exp)
            elif entry_point in MBPP_NOT_NONE:
                exact = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry_point == "find_zero":
            return bool(abs(_poly(*inp, out)) <= atol), atol
        if atol == 0 and _is_floats(exp):
            atol = 1e-6
        if not exact and atol != 0:
            import numpy as np

            if type(out) is not type(exp):
                return False, atol
            if isinstance(exp, (list, tuple)) and len(out) != len(exp):
                return False, atol
            return bool(np.allclose(out, exp, rtol=1e-07, atol=atol)), atol
        return bool(exact), atol
    except Exception:  # noqa: BLE001 - an output that cannot even be compared does not match
        return False, atol


def _limits(seconds: list[float]) -> list[float]:
    return [max(MIN_TIME_LIMIT_S, GT_TIME_LIMIT_FACTOR * t) for t in seconds]


def check_solution(p: Problem, program: str) -> dict[str, Any]:
    """Base and plus verdicts of one candidate program: {"base", "plus", "reason", "detail"}."""
    from infir.sandbox import CallOutput, call_function, run_program

    if p.base_inputs is None:  # hub rows: scripts
        suffix = f"\n\ncheck({p.entry_point})\n" if p.dataset == "humaneval" and "def check(" in (
            p.plus_script or "") else "\n"
        base = run_program(f"{program}\n\n{p.base_script}\n", timeout_s=SCRIPT_TIMEOUT_S, memory_mb=MEMORY_MB)
        if not base.passed:
            return {"base": False, "plus": False, "reason": base.reason, "detail": base.detail}
        plus = run_program(f"{program}\n\n{p.plus_script}{suffix}", timeout_s=SCRIPT_TIMEOUT_S,
                           memory_mb=MEMORY_MB)
        return {"base": True, "plus": plus.passed, "reason": plus.reason, "detail": plus.detail}

    base_truth, plus_truth = ground_truth(p)
    inputs = p.base_inputs + (p.plus_inputs or [])
    expected = base_truth.outputs + plus_truth.outputs
    limits = _limits(base_truth.seconds) + _limits(plus_truth.seconds)
    n_base = len(p.base_inputs)
    state = {"atol": p.atol, "failed_at": None, "reason": None, "detail": ""}

    def on_output(i: int, out: CallOutput) -> bool:
        if out.status != "ok":
            state.update(failed_at=i, reason=out.status, detail=out.detail)
            return False
        ok, state["atol"] = output_matches(p.dataset, p.entry_point, inputs[i], out.value, expected[i],
                                           state["atol"])
        if not ok:
            state.update(failed_at=i, reason="wrong_output", detail=f"input {i}: got {str(out.value)[:200]}, "
                                                                    f"expected {str(expected[i])[:200]}")
            return False
        return True

    timeout = min(PER_TASK_TIMEOUT_S, sum(limits[:n_base])) + min(PER_TASK_TIMEOUT_S, sum(limits[n_base:])) + 2
    result = call_function(program, p.entry_point, inputs, limits, timeout_s=timeout, memory_mb=MEMORY_MB,
                           on_output=on_output)
    failed_at = state["failed_at"]
    if failed_at is None and not result.passed:  # died or timed out before all outputs arrived
        outputs = result.outputs or []
        failed_at = next((i for i, o in enumerate(outputs) if o.status != "ok"), 0)
        state.update(reason=result.reason, detail=result.detail)
    base_ok = failed_at is None or failed_at >= n_base
    return {"base": base_ok, "plus": failed_at is None, "reason": state["reason"], "detail": state["detail"]}


def _grade(sample: Sample, completions: list[str]) -> dict[str, Any]:
    p: Problem = sample.meta["problem"]
    checks = [check_solution(p, solution(sample, c)) for c in completions]
    n_plus = sum(c["plus"] for c in checks)
    return {"correct": checks[0]["plus"], "base_correct": checks[0]["base"], "n": len(checks),
            "n_correct": n_plus, "n_base_correct": sum(c["base"] for c in checks),
            "reasons": [None if c["plus"] else c["reason"] for c in checks], "failure": checks[0]["detail"]}


def evalplus_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """pass@k of the plus column (the headline "pass@1") and of the base column ("base_pass@1", ...)."""
    plus = code_metrics(rows)
    base = code_metrics([{"n": r["n"], "n_correct": r["n_base_correct"]} for r in rows])
    return {**plus, **{f"base_{k}": v for k, v in base.items() if k != "n"}}


def _contamination(dataset: str):
    def texts(data_dir: Path | None) -> list[str]:
        return [p.canonical for p in problems(dataset, data_dir)]

    return texts


TASKS = [
    Task("humaneval_plus", "generate", _load("humaneval"), _grade, evalplus_metrics,
         "HumanEval+ (164, EvalPlus): pass@k on base and plus tests, outputs compared with the canonical "
         "solution's", source=HUMANEVAL_PLUS_SOURCE, contamination=_contamination("humaneval"),
         grade_in_threads=True),
    Task("mbpp_plus", "generate", _load("mbpp"), _grade, evalplus_metrics,
         "MBPP+ (378, EvalPlus): pass@k on base and plus tests, outputs compared with the canonical solution's",
         source=MBPP_PLUS_SOURCE, contamination=_contamination("mbpp"), grade_in_threads=True),
]
