"""Grading: reference answers equal reformatted copies of themselves; perturbed answers do not."""

from __future__ import annotations

import json
import re

import pytest

from infir.eval.grading import extract_answer, find_boxed, math_equal
from infir.utils.io import read_jsonl


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("so x = \\boxed{\\frac{1}{\\sqrt{2}}}. Done", "\\frac{1}{\\sqrt{2}}"),
        ("first \\boxed{1} then \\boxed{\\{2, 3\\}}", "\\{2, 3\\}"),
        ("Natalia sold 48+24 = 72 clips.\n#### $1,072", "1072"),
        ("Thus, the answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("The answer is: 42\nand more text", "42"),
        ("She pays 3 * $1,250.50 = $3,751.50 in total", "3751.50"),
        ("So the answer is 18 dollars.", "18"),
        ("The answer is: **42**", "42"),
        ("The answer is 20% of them", "20%"),
        ("no digits at all", None),
        ("", None),
    ],
)
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


def test_boxed_nested_braces() -> None:
    assert find_boxed("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}} and \\fbox{x^{2}}") == [
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        "x^{2}",
    ]


@pytest.mark.parametrize(
    "a, b",
    [
        ("\\frac12", "0.5"),
        ("\\dfrac{1}{2}", "0.5"),
        ("\\frac{1}{2}", "\\dfrac{1}{2}"),
        ("50\\%", "0.5"),
        ("1,000", "1000"),
        ("(1, 2)", "(1,2)"),
        ("[0, 1)", "[0,1)"),
        ("x^2+2x+1", "(x+1)^2"),
        ("3\\sqrt{2}", "\\sqrt{18}"),
        ("\\text{(C)}", "C"),
        ("10^\\circ", "10"),
        ("3/4", "0.75"),
    ],
)
def test_equivalent_forms(a: str, b: str) -> None:
    assert math_equal(a, b) and math_equal(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        ("0.5", "0.6"),
        ("(1,2)", "(2,1)"),
        ("[0,1)", "[0,1]"),
        ("x^2", "x^3"),
        ("B", "C"),
        ("", "1"),
        (None, "1"),
    ],
)
def test_different_answers(a: str | None, b: str) -> None:
    assert not math_equal(a, b)


def _perturb(answer: str) -> str | None:
    """Change the first digit (9 -> 1 to avoid 0-leading no-ops)."""
    m = re.search(r"\d", answer)
    if not m:
        return None
    d = int(m.group())
    return answer[: m.start()] + str(d + 1 if d < 9 else 1) + answer[m.end() :]


def test_gsm8k_references_against_reformatted(shared_data) -> None:
    rows = list(read_jsonl(shared_data / "gsm8k" / "test.jsonl"))
    for row in rows:
        ref = extract_answer(row["answer"])
        assert ref is not None and "," not in ref
        value = float(ref)
        with_commas = f"{value:,.0f}" if value == int(value) else f"{value:,}"
        forms = [
            f"The answer is ${with_commas}.",
            f"\\boxed{{{ref}}}",
            f"#### {with_commas}",
            f"so it costs {ref}.00 dollars",
        ]
        for form in forms:
            assert math_equal(extract_answer(form), ref), (form, ref)
        assert not math_equal(str(value + 1), ref)
        assert not math_equal(_perturb(ref), ref)


def test_math500_references_against_reformatted(shared_data) -> None:
    rows = [json.loads(line) for line in open(shared_data / "math" / "math500_test.jsonl")]
    sample = rows[::5]  # 100 answers of every kind (Math-Verify costs ~15 ms per comparison)
    for row in sample:
        ref = row["answer"]
        boxed = extract_answer(f"Putting it together, the final answer is $\\boxed{{{ref}}}$.")
        assert math_equal(boxed, ref), (boxed, ref)
        dfrac = ref.replace("\\frac", "\\dfrac")
        assert math_equal(dfrac, ref), (dfrac, ref)
        perturbed = _perturb(ref)
        if perturbed is not None:
            assert not math_equal(perturbed, ref), (perturbed, ref)


def test_grading_off_main_thread() -> None:
    """Math-Verify's SIGALRM timeout would fail in a worker thread; grading must still work there."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda ab: math_equal(*ab), [("\\frac12", "0.5"), ("x^2", "x^3")])) == [
            True,
            False,
        ]


# Answers that used to hang the grader (C-level big-integer work that no signal interrupts) or cost seconds.
HANG_CASES = [
    ("9^{9^{9^{9}}}", "1"),
    ("2^{2^{30}}", "2"),
    ("10^{10^{10}}", "10"),
    ("100000!", "1"),
    ("(10^{6})!", "2"),
    ("\\binom{1000000}{500000}", "1"),
    ("x" * 100_000, "x"),
    ("1" * 100_000, "1"),
    ("\\frac{1}{" * 20_000, "\\frac{1}{2}"),
    ("\\frac{1}{", "\\frac{1}{2}"),
    ("\\sqrt{2", "1"),
    ("{" * 600 + "1" + "}" * 600, "1"),
    ("1", "9^{9^{9^{9}}}"),
]


def _all_not_equal_quickly(pairs: list[tuple[str, str]]) -> float:
    import time

    start = time.monotonic()
    assert [math_equal(a, b) for a, b in pairs] == [False] * len(pairs)
    return time.monotonic() - start


def test_hang_cases_are_not_equal_within_seconds_on_the_main_thread() -> None:
    assert _all_not_equal_quickly(HANG_CASES) < 5.0
    # The caps do not refuse ordinary big numbers.
    from infir.eval.grading import refuse_reason

    assert math_equal("2^{100}", "1267650600228229401496703205376")
    assert math_equal("10!", "3628800")
    assert refuse_reason("1" + "0" * 500) is None and refuse_reason("2^{1000}") is None
    assert refuse_reason("2^{1000000}") is not None


def test_hang_cases_off_the_main_thread_and_in_asyncio_tasks() -> None:
    import asyncio
    import time
    from concurrent.futures import ThreadPoolExecutor

    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda ab: math_equal(*ab), HANG_CASES)) == [False] * len(HANG_CASES)

    async def grade_all() -> list[bool]:
        async def one(a: str, b: str) -> bool:
            return math_equal(a, b)

        return await asyncio.gather(*(one(a, b) for a, b in HANG_CASES))

    assert asyncio.run(grade_all()) == [False] * len(HANG_CASES)
    assert time.monotonic() - start < 10.0


def test_hang_cases_in_a_forked_process_pool() -> None:
    """A forked pool worker must not reuse the parent's Math-Verify workers (it starts its own)."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    assert math_equal("\\frac{1}{2}", "0.5")  # the parent has a warm pool before the fork
    start = time.monotonic()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        preds = [a for a, _ in HANG_CASES] + ["x^2+2x+1"]
        refs = [b for _, b in HANG_CASES] + ["(x+1)^2"]
        assert list(pool.map(math_equal, preds, refs)) == [False] * len(HANG_CASES) + [True]
    assert time.monotonic() - start < 30.0
    assert math_equal("x^2+2x+1", "(x+1)^2")  # the parent's own pool still answers


def test_a_comparison_past_the_deadline_is_killed_and_the_pool_recovers() -> None:
    """(x+1)^{2000} passes the caps (a symbolic power) and keeps SymPy busy for minutes: the worker is killed
    at the deadline, the answer is "not equal", and the next comparison gets a fresh worker."""
    import time

    from infir.eval.grading import _math_verify_equal

    assert math_equal("x^2+2x+1", "(x+1)^2")  # warm
    start = time.monotonic()
    assert not _math_verify_equal("(x+1)^{2000}", "(x+2)^{2000}", deadline_s=1.5)
    assert time.monotonic() - start < 4.0
    assert math_equal("\\sqrt{18}", "3\\sqrt{2}")


def test_extraction_is_linear_on_hostile_completions() -> None:
    import time

    start = time.monotonic()
    assert extract_answer("\\boxed{" * 50_000) is None
    assert extract_answer("\\boxed{1} " * 20_000) == "1"
    assert extract_answer("9" * 100_000) == "9" * 100_000
    assert time.monotonic() - start < 3.0


def test_non_finite_numbers_are_not_equal() -> None:
    assert not math_equal("1e400", "1e401")
