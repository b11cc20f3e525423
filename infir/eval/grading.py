"""Answer extraction and equivalence grading for math-style answers.

`extract_answer` pulls the final answer out of a model completion (last `\\boxed{}`, GSM8K's `####`,
"the answer is ...", or the final number). `math_equal` decides whether two answers mean the same
thing, on top of Math-Verify (LaTeX normalisation, fractions/decimals/percent, tuples, intervals,
sets, symbolic equivalence) with a numeric fast path and a relative tolerance.
"""

from __future__ import annotations

import math
import re
import threading
from fractions import Fraction

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_FINAL_NUMBER_RE = re.compile(rf"(?:{_NUMBER})(?:\s*/\s*(?:{_NUMBER}))?")
_ANSWER_IS_RE = re.compile(r"answer\s+is\s*:?\s*(.+)", re.IGNORECASE)
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def find_boxed(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` / `\\fbox{...}` in order, nested braces respected.

    Also accepts the brace-less form `\\boxed 5`.
    """
    found: list[str] = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        found.append(text[i + 1 : j].strip())
                        break
                j += 1
        elif m.group(0).endswith(" "):
            bare = re.match(r"[^\s$]+", text[i:])
            if bare:
                found.append(bare.group(0).rstrip(".,"))
    return found


def _clean(answer: str) -> str:
    """Light cleanup of an extracted answer: math delimiters, dollar signs, trailing punctuation."""
    a = answer.strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")):
        if a.startswith(left) and a.endswith(right) and len(a) >= len(left) + len(right):
            a = a[len(left) : len(a) - len(right)].strip()
    a = a.rstrip(".").strip()
    a = a.replace("\\$", "").strip()
    bare = a.lstrip("$").strip()
    if _THOUSANDS_RE.match(bare) or re.fullmatch(r"-?\d+(\.\d+)?", bare):  # "$1,234" -> "1234"
        a = bare.replace(",", "")
    return a


def _clean_number(text: str) -> str:
    return text.replace(",", "").replace(" ", "")


def extract_answer(completion: str) -> str | None:
    """The final answer in a completion, or None when there is none.

    Order: last `\\boxed{}`; text after the last `####` (GSM8K); "the answer is X"; the final number.
    """
    if not completion:
        return None
    boxed = find_boxed(completion)
    if boxed:
        return _clean(boxed[-1]) or None
    if "####" in completion:
        tail = completion.rsplit("####", 1)[1].strip().split("\n", 1)[0]
        tail = tail.replace("$", "").replace(",", "").strip().rstrip(".").strip()
        if tail:
            return tail
    matches = list(_ANSWER_IS_RE.finditer(completion))
    if matches:
        tail = matches[-1].group(1).split("\n", 1)[0].strip()
        tail = re.split(r"\.\s|\.$", tail, maxsplit=1)[0].replace("**", "").strip()
        with_unit = re.fullmatch(rf"\\?\$?\s*({_NUMBER})\s*(\\?%)?\s*[A-Za-z][A-Za-z\s]*", tail)
        if with_unit:  # "18 dollars" -> "18"
            return _clean_number(with_unit.group(1)) + ("%" if with_unit.group(2) else "")
        tail = _clean(tail)
        if tail:
            return tail
    numbers = _FINAL_NUMBER_RE.findall(completion)
    if numbers:
        return _clean_number(numbers[-1])
    return None


def _as_number(text: str) -> float | None:
    """A plain number ("1,234", "-3.5", "3/4", "50%") as a float, else None."""
    t = text.strip().replace("\\!", "").replace("\\,", "").replace("$", "").replace(" ", "")
    t = t.replace("\\%", "%")
    if t.endswith("%"):
        inner = _as_number(t[:-1])
        return None if inner is None else inner / 100
    if _THOUSANDS_RE.match(t):
        t = t.replace(",", "")
    try:
        if re.fullmatch(r"-?\d+/\d+", t):
            return float(Fraction(t))
        if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", t):
            return float(t)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _numbers_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def _normalise_text(text: str) -> str:
    t = text.strip().replace(" ", "").replace("\\!", "").replace("\\,", "")
    t = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", t)
    t = (
        t.replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
        .replace("\\left", "")
        .replace("\\right", "")
    )
    return t.strip("$").rstrip(".").lower()


def _as_latex(answer: str) -> str:
    a = answer.strip()
    if a.startswith("$") or a.startswith("\\(") or a.startswith("\\["):
        return a
    if _THOUSANDS_RE.match(a):
        a = a.replace(",", "")
    return f"${a}$"


def _math_verify_equal(prediction: str, reference: str) -> bool:
    from math_verify import parse, verify

    # Math-Verify's timeouts use SIGALRM, which only works on the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(_as_latex(reference), parsing_timeout=timeout)
        pred = parse(_as_latex(prediction), parsing_timeout=timeout)
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - a grader must never crash an eval; unparseable = not equal
        return False


def math_equal(prediction: str | None, reference: str | None) -> bool:
    """Whether `prediction` and `reference` denote the same mathematical answer."""
    if prediction is None or reference is None:
        return False
    prediction, reference = str(prediction).strip(), str(reference).strip()
    if not prediction or not reference:
        return False
    if _normalise_text(prediction) == _normalise_text(reference):
        return True
    p_num, r_num = _as_number(prediction), _as_number(reference)
    if p_num is not None and r_num is not None:
        if _numbers_close(p_num, r_num):
            return True
        # "50%" for a reference of 50 (the percent sign is often dropped or added).
        if prediction.rstrip().endswith("%") and _numbers_close(p_num * 100, r_num):
            return True
        if reference.rstrip().endswith("%") and _numbers_close(p_num, r_num * 100):
            return True
        return False
    return _math_verify_equal(prediction, reference)
