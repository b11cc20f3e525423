"""HumanEval+ / MBPP+ on tiny files in the exact layout of EvalPlus's releases and hub datasets: base and plus
columns, EvalPlus's tolerances and special oracles, outputs compared outside the sandbox."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from infir.eval.runner import markdown_table
from infir.eval.tasks import evalplus, get_task, task_names

ADD_PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    """\n'
THIRD_PROMPT = 'def third(x: float) -> float:\n    """A third of x.\n    >>> third(3.0)\n    1.0\n    """\n'
ZERO_PROMPT = (
    "import math\n\n\ndef poly(xs: list, x: float):\n    return sum([coeff * math.pow(x, i) for i, coeff in "
    "enumerate(xs)])\n\n\ndef find_zero(xs: list):\n    \"\"\"A zero of the polynomial xs.\"\"\"\n"
)
BISECT = (
    "    begin, end = -1.0, 1.0\n    while poly(xs, begin) * poly(xs, end) > 0:\n        begin *= 2.0\n"
    "        end *= 2.0\n    while end - begin > 1e-10:\n        center = (begin + end) / 2.0\n"
    "        if poly(xs, center) * poly(xs, begin) > 0:\n            begin = center\n        else:\n"
    "            end = center\n    return begin\n"
)

# Rows as in HumanEvalPlus-v0.1.10.jsonl.gz: HumanEval's fields + contract, base_input, plus_input, atol.
HUMANEVAL_PLUS_ROWS = [
    {"task_id": "HumanEval/0", "prompt": ADD_PROMPT, "entry_point": "add", "canonical_solution": "    return a + b\n",
     "contract": "\n    assert isinstance(a, int)\n", "base_input": [[2, 3], [0, 0]],
     "plus_input": [[10**6, -3], [-5, 5], [123456789, 987654321]], "atol": 0,
     "test": "\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n"},
    {"task_id": "HumanEval/1", "prompt": THIRD_PROMPT, "entry_point": "third", "canonical_solution": "    return x / 3\n",
     "contract": "", "base_input": [[3.0], [1.0]], "plus_input": [[10.0], [-7.5]], "atol": 0, "test": ""},
    {"task_id": "HumanEval/32", "prompt": ZERO_PROMPT, "entry_point": "find_zero", "canonical_solution": BISECT,
     "contract": "", "base_input": [[[-6, 11, -6, 1]], [[1, 2]]], "plus_input": [[[-1, 0, 0, 1]]], "atol": 1e-4,
     "test": ""},
]

SIMILAR = ('"""\nWrite a function to find the shared elements from the given two lists.\n'
           "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n\"\"\"\n")
ANGLE = '"""\nWrite a function to get the angle of a complex number.\nassert math.isclose(angle_complex(0,1j), 1.5707963267948966, rel_tol=0.001)\n"""\n'
CHECK_STR = '"""\nWrite a function to check whether the given string is starting with a vowel or not using regex.\nassert check_str("annie")\n"""\n'
# Rows as in MbppPlus-v0.2.0.jsonl.gz: task_id, prompt, entry_point, canonical_solution, base_input, plus_input,
# atol, contract, assertion. Inputs are JSON: Mbpp/2's tuples are lists, Mbpp/124's complex numbers strings.
MBPP_PLUS_ROWS = [
    {"task_id": "Mbpp/2", "prompt": SIMILAR, "entry_point": "similar_elements",
     "canonical_solution": "\ndef similar_elements(test_tup1, test_tup2):\n  return tuple(set(test_tup1) & set(test_tup2))\n",
     "contract": "", "assertion": "\nassert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n",
     "base_input": [[[3, 4, 5, 6], [5, 7, 4, 10]], [[1, 2, 3, 4], [5, 4, 3, 7]]],
     "plus_input": [[[11, 12, 14, 13], [17, 15, 14, 13]]], "atol": 0},
    {"task_id": "Mbpp/124", "prompt": ANGLE, "entry_point": "angle_complex",
     "canonical_solution": "\nimport cmath\ndef angle_complex(a,b):\n  return cmath.phase(a+b)\n",
     "contract": "", "assertion": "", "base_input": [["0.0", "1j"], ["2.0", "1j"]], "plus_input": [["-1.0", "0.5j"]],
     "atol": 1e-4},
    {"task_id": "Mbpp/737", "prompt": CHECK_STR, "entry_point": "check_str",
     "canonical_solution": "\nimport re\ndef check_str(string):\n  return re.search(r'^[aeiouAEIOU][A-Za-z0-9_]*', string)\n",
     "contract": "", "assertion": "", "base_input": [["annie"], ["dawood"]], "plus_input": [["Else"], ["xyz"]],
     "atol": 0},
]


def _write_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@pytest.fixture()
def release_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INFIR_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_gz(data / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz", HUMANEVAL_PLUS_ROWS)
    _write_gz(data / "evalplus" / "MbppPlus-v0.2.0.jsonl.gz", MBPP_PLUS_ROWS)
    return data


def _grade(task: str, data: Path, task_id: str, completions: list[str], mode: str = "base") -> dict:
    sample = next(s for s in get_task(task, mode).load(data, mode, None) if s.id == task_id)
    return get_task(task, mode).grade(sample, completions)


def test_tasks_are_discovered_with_sources_and_contamination(release_dir: Path) -> None:
    assert {"humaneval_plus", "mbpp_plus"} <= set(task_names())
    task = get_task("humaneval_plus")
    assert task.source.hub == "evalplus/humanevalplus" and get_task("mbpp_plus").source.hub == "evalplus/mbppplus"
    texts = task.contamination(release_dir)
    assert texts[0] == ADD_PROMPT + "    return a + b\n"
    samples = task.load(release_dir, "base", None)
    assert [s.id for s in samples] == ["HumanEval/0", "HumanEval/1", "HumanEval/32"]
    assert samples[0].prompt == ADD_PROMPT.strip() + "\n" and "\ndef " in samples[0].stop
    chat = task.load(release_dir, "chat", 1)[0]
    assert chat.prompt[0]["content"].startswith(evalplus.CHAT_INSTRUCTION)
    mbpp = get_task("mbpp_plus").load(release_dir, "base", None)
    assert mbpp[0].meta["problem"].base_inputs[0] == [(3, 4, 5, 6), (5, 7, 4, 10)]  # EvalPlus's tuples
    assert mbpp[1].meta["problem"].base_inputs[0] == (0.0, 1j)  # and complex numbers


def test_humaneval_plus_base_and_plus_columns(release_dir: Path) -> None:
    row = _grade("humaneval_plus", release_dir, "HumanEval/0", [
        "    return a + b\n",  # right
        "    return a + b if abs(a) < 1000 else 0\n",  # passes HumanEval's base tests, not the plus ones
        "    return a - b\n",  # wrong
        "    class Liar(int):\n        def __eq__(self, other):\n            return True\n    return Liar(0)\n",
        "    import sys\n    sys.exit(0)\n",  # leaves early
        "    return a + b\n\nprint(add(1, 2))\nassert add(1, 1) == 3\n",  # example code the sanitizer drops
    ])
    assert row["n"] == 6 and row["correct"] and row["base_correct"]
    assert row["n_base_correct"] == 3 and row["n_correct"] == 2
    assert row["reasons"] == [None, "wrong_output", "wrong_output", "wrong_output", "early_exit", None]


def test_float_tolerance_and_the_find_zero_oracle(release_dir: Path) -> None:
    third = _grade("humaneval_plus", release_dir, "HumanEval/1",
                   ["    return x / 3 + 1e-9\n", "    return round(x / 3, 2)\n", "    return int(x / 3)\n"])
    assert (third["n_correct"], third["correct"]) == (1, True)  # within 1e-6 passes; 2 decimals do not
    zero = _grade("humaneval_plus", release_dir, "HumanEval/32",
                  [BISECT.replace("begin, end = -1.0, 1.0", "begin, end = -2.5, 2.5"), "    return 0.5\n"])
    # A different root than the canonical solution's is still a root: |poly(x)| <= atol decides.
    assert zero["n_correct"] == 1 and zero["correct"]


def test_mbpp_plus_special_oracles_and_chat_mode(release_dir: Path) -> None:
    similar = _grade("mbpp_plus", release_dir, "Mbpp/2", [
        "def similar_elements(a, b):\n    return sorted(set(a) & set(b), reverse=True)\n",  # order-free
        "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n",
    ])
    assert (similar["n_correct"], similar["n_base_correct"]) == (1, 1)
    angle = _grade("mbpp_plus", release_dir, "Mbpp/124", [
        "import cmath\ndef angle_complex(a, b):\n    return cmath.phase(a + b) + 1e-5\n",  # within atol 1e-4
        "import cmath\ndef angle_complex(a, b):\n    return round(cmath.phase(a + b), 2)\n",
    ])
    assert angle["n_correct"] == 1 and angle["correct"]
    reply = ("Sure:\n```python\nimport re\n\ndef check_str(s):\n    return bool(re.match('[aeiouAEIOU]', s))\n\n"
             "print(check_str('annie'))\n```\n")
    vowels = _grade("mbpp_plus", release_dir, "Mbpp/737", [reply, "```python\ndef check_str(s):\n    return None\n```"],
                    mode="chat")
    assert vowels["n_correct"] == 1 and vowels["correct"]  # "not None" oracle: a bool or a match object


def test_metrics_and_results_table(release_dir: Path) -> None:
    task = get_task("humaneval_plus")
    rows = [_grade("humaneval_plus", release_dir, "HumanEval/0", ["    return a + b if a < 1000 else 0\n"]),
            _grade("humaneval_plus", release_dir, "HumanEval/1", ["    return x / 3\n"])]
    metrics = task.aggregate(rows)
    assert metrics == {"pass@1": 0.5, "n": 2.0, "base_pass@1": 1.0}
    table = markdown_table({"humaneval": {"pass@1": 0.5, "n": 2.0}, "humaneval_plus": metrics}, "base")
    assert "| humaneval_plus (base tests) | base | pass@1 | 100.00 | 2 |" in table
    assert "| humaneval_plus | base | pass@1 | 50.00 | 2 |" in table


def test_ground_truth_is_cached_on_disk(release_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evalplus, "_TRUTH", {})  # not from an earlier test's memory
    _grade("humaneval_plus", release_dir, "HumanEval/0", ["    return a + b\n"])
    cached = list((tmp_path / "cache" / "evalplus").glob("*.json"))
    assert cached and json.loads(cached[0].read_text())["task_id"] == "HumanEval/0"


def test_broken_release_row_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFIR_CACHE_DIR", str(tmp_path / "cache"))
    bad = {**HUMANEVAL_PLUS_ROWS[0], "task_id": "HumanEval/99", "canonical_solution": "    return a / b\n",
           "plus_input": [[1, 0]]}
    _write_gz(tmp_path / "evalplus" / "HumanEvalPlus.jsonl.gz", [bad])
    with pytest.raises(RuntimeError, match="HumanEval/99: the canonical solution itself fails"):
        _grade("humaneval_plus", tmp_path, "HumanEval/99", ["    return a + b\n"])


def test_sanitize_keeps_what_the_entry_point_needs() -> None:
    code = ("import math\nfrom typing import List\nHELPER = 3\nUNUSED = input()\n\n"
            "def helper(x):\n    return x * HELPER\n\ndef f(x):\n    return helper(x) + math.pi\n\n"
            "print(f(1))\nassert f(2) == 0\nif __name__ == '__main__':\n    f(3)\n")
    clean = evalplus.sanitize(code, "f")
    assert "input()" not in clean and "print(" not in clean and "assert" not in clean and "__main__" not in clean
    assert "HELPER = 3" in clean and "def helper" in clean and "import math" in clean
    cut = "def f(x):\n    return x + 1\n\nprint(f(1)\n"  # a completion cut mid-line still yields f
    assert evalplus.sanitize(cut, "f").strip() == "def f(x):\n    return x + 1"


# Hub rows (evalplus/humanevalplus and evalplus/mbppplus): the tests are scripts with inputs and results written in.
HUB_HE_TEST = (
    "import numpy as np\n\ndef is_floats(x) -> bool:\n    return isinstance(x, float)\n\n"
    "def assertion(out, exp, atol):\n    exact_match = out == exp\n    if atol == 0 and is_floats(exp):\n"
    "        atol = 1e-6\n    if not exact_match and atol != 0:\n        assert np.allclose(out, exp, rtol=1e-07, atol=atol)\n"
    "    else:\n        assert exact_match\n\n"
    "def check(candidate):\n    inputs = [[2, 3], [0, 0], [1000000, -3], [-5, 5]]\n    results = [5, 0, 999997, 0]\n"
    "    for i, (inp, exp) in enumerate(zip(inputs, results)):\n        assertion(candidate(*inp), exp, 0)\n"
)
HUB_MBPP_TEST = (
    "import numpy as np\nfrom math import inf\n\ndef assertion(out, exp, atol):\n    out = set(out)\n    exp = set(exp)\n"
    "    assert out == exp\n\ninputs = [[(3, 4, 5, 6), (5, 7, 4, 10)], [(11, 12, 14, 13), (17, 15, 14, 13)]]\n"
    "results = [(4, 5), (13, 14)]\nfor i, (inp, exp) in enumerate(zip(inputs, results)):\n"
    "    assertion(similar_elements(*inp), exp, 0)\n"
)


def test_hub_format_rows(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    (data / "humanevalplus").mkdir(parents=True)
    (data / "humanevalplus" / "test.jsonl").write_text(json.dumps(
        {"task_id": "HumanEval/0", "prompt": ADD_PROMPT, "canonical_solution": "    return a + b\n",
         "entry_point": "add", "test": HUB_HE_TEST}) + "\n")
    _write_gz(data / "humaneval" / "HumanEval.jsonl.gz", [
        {"task_id": "HumanEval/0", "prompt": ADD_PROMPT, "canonical_solution": "    return a + b\n",
         "entry_point": "add", "test": "\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n"}])
    (data / "mbppplus").mkdir()
    (data / "mbppplus" / "test.jsonl").write_text(json.dumps(
        {"task_id": 2, "code": "def similar_elements(a, b):\n  return tuple(set(a) & set(b))\n",
         "prompt": "Write a function to find the shared elements from the given two lists.",
         "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
         "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"],
         "test": HUB_MBPP_TEST}) + "\n")
    he = _grade("humaneval_plus", data, "HumanEval/0", ["    return a + b\n", "    return a + b if a < 1000 else 0\n",
                                                        "    import os\n    os._exit(0)\n"])
    assert (he["n_correct"], he["n_base_correct"]) == (1, 2)
    assert he["reasons"][2] == "early_exit"
    mbpp_sample = get_task("mbpp_plus").load(data, "base", None)[0]
    assert mbpp_sample.id == "Mbpp/2" and mbpp_sample.meta["problem"].entry_point == "similar_elements"
    assert mbpp_sample.prompt.startswith('"""\nWrite a function') and "assert set(similar_elements" in mbpp_sample.prompt
    mbpp = get_task("mbpp_plus").grade(mbpp_sample, ["def similar_elements(a, b):\n    return list(set(a) & set(b))\n"])
    assert mbpp["correct"] and mbpp["base_correct"]
