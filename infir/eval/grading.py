"""Answer extraction and equivalence grading for math-style answers.

`extract_answer` pulls the final answer out of a model completion (last `\\boxed{}`, GSM8K's `####`,
"the answer is ...", or the final number). `math_equal` decides whether two answers mean the same
thing, on top of Math-Verify (LaTeX normalisation, fractions/decimals/percent, tuples, intervals,
sets, symbolic equivalence) with a numeric fast path and a relative tolerance.

A grader never hangs, in any calling context (main thread, worker threads, asyncio tasks, process pools):

1. cheap caps first, in this process: answers over MAX_ANSWER_CHARS, unbalanced or deeply nested braces, and
   numbers whose value alone would be huge (exponent towers like `9^{9^{9^{9}}}`, `2^{2^{30}}`, factorials and
   binomials of huge numbers: estimated from the text, never computed) are "not equal" unless their normalised
   texts are identical. These are the cases where SymPy's big-integer arithmetic runs in C for minutes without
   ever returning to the interpreter, so no signal or thread timeout could stop it.
2. Math-Verify itself runs in a small pool of worker subprocesses with a hard deadline
   (`infir.eval.verify_pool`): a comparison still running then is killed with its worker and counts as
   "not equal". Measured cost (bench/verdicts.py, bench/RESULTS.md): 1,000 MATH-500 comparisons take 1.07x the wall time
   and 1.05x the CPU time of in-process Math-Verify (warm, on a saturated 2-core machine); verdicts identical.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from infir.eval import verify_pool

MAX_ANSWER_CHARS = 1000  # longer answers are compared as normalised text only
MAX_BRACE_DEPTH = 40
MAX_RESULT_DIGITS = 100_000  # a number written in the answer may have at most this many digits
MAX_SYMBOLIC_EXPONENT = 100_000  # x^{N} with N above this is not handed to SymPy at all

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_FINAL_NUMBER_RE = re.compile(rf"(?:{_NUMBER})(?:\s*/\s*(?:{_NUMBER}))?")
_ANSWER_IS_RE = re.compile(r"answer\s+is\s*:?\s*(.+)", re.IGNORECASE)
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each `{` -> the position of its `}` (one pass; unclosed braces are left out)."""
    match: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            match[stack.pop()] = i
    return match


def find_boxed(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` / `\\fbox{...}` in order, nested braces respected.

    Also accepts the brace-less form `\\boxed 5`. Linear in the text's length (a completion that opens
    thousands of boxes it never closes costs one pass, not one pass per box).
    """
    found: list[str] = []
    match: dict[int, int] | None = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            if match is None:
                match = _matching_braces(text)
            j = match.get(i)
            if j is not None:
                found.append(text[i + 1 : j].strip())
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
            value = float(Fraction(t))
        elif re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", t):
            value = float(t)
        else:
            return None
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value if math.isfinite(value) else None  # "1e400" is not infinity


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


# ---------------------------------------------------------------------------------------------------------------
# Cheap caps: estimate, from the text alone, how large the numbers in an answer are.
# ---------------------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(\d+(?:\.\d+)?|\\[a-zA-Z]+|\\.|\*\*|.)", re.DOTALL)
_LOG10_INF = float("inf")


def _log10_factorial(log10_n: float) -> float:
    if log10_n > 15:
        return _LOG10_INF
    n = 10**log10_n
    return math.lgamma(n + 1) / math.log(10)


class _Estimator:
    """log10 of the magnitude of a purely numeric LaTeX expression (None when it has symbols).

    Grammar: sum := product ((+|-) product)*; product := power ((*|\\cdot|\\times|/) power)*;
    power := atom (^ atom | ** atom | !)*; atom := number | {sum} | (sum) | \\frac{}{} | \\binom{}{}.
    It also records every exponent and factorial it meets, symbolic bases included (`risks`).
    """

    def __init__(self, text: str) -> None:
        self.tokens = [t for t in _TOKEN_RE.findall(text) if t.strip()]
        self.i = 0
        self.max_digits = 0.0  # the largest number of digits any sub-expression would have
        self.max_symbolic_exponent = 0.0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.i += 1
        return tok

    def note(self, log10_value: float | None) -> None:
        if log10_value is not None:
            self.max_digits = max(self.max_digits, log10_value)

    def group(self, close: str) -> float | None:
        value = self.sum()
        if self.peek() == close:
            self.take()
        return value

    def atom(self) -> float | None:
        tok = self.take()
        if tok is None:
            return None
        if tok[0].isdigit():
            v = float(tok)
            if math.isinf(v):  # more than ~308 digits: count them instead
                return float(len(tok.split(".")[0]) - 1)
            return math.log10(v) if v > 0 else -_LOG10_INF
        if tok == "{":
            return self.group("}")
        if tok == "(":
            return self.group(")")
        if tok in ("\\frac", "\\dfrac", "\\tfrac", "\\binom", "\\dbinom", "\\tbinom"):
            a = self.atom()
            b = self.atom()
            if a is None or b is None:
                return None
            if "binom" in tok:  # C(a, b) <= 2^a
                return (10**a if a < 15 else _LOG10_INF) * math.log10(2)
            return a - b
        if tok in ("\\left", "\\right", "\\!", "\\,", "\\;"):
            return self.atom()
        self.skip_argument()
        return None  # a symbol, a function, anything not a plain number

    def skip_argument(self) -> None:
        if self.peek() == "{":
            self.take()
            self.group("}")

    def power(self) -> float | None:
        base = self.atom()
        while True:
            tok = self.peek()
            if tok in ("^", "**"):
                self.take()
                exponent = self.atom()
                if exponent is None:
                    base = None
                    continue
                e = 10**exponent if exponent < 300 else _LOG10_INF
                if base is None:
                    self.max_symbolic_exponent = max(self.max_symbolic_exponent, e)
                    continue
                if base not in (0.0, -_LOG10_INF):  # 1^e = 1 and 0^e = 0; otherwise log10(b^e) = e log10(b)
                    base = e * base
                self.note(base)
            elif tok == "!":
                self.take()
                base = _log10_factorial(base) if base is not None else None
                self.note(base if base is not None else None)
            else:
                self.note(base)
                return base

    def product(self) -> float | None:
        value = self.power()
        while self.peek() in ("*", "\\cdot", "\\times", "/"):
            op = self.take()
            rhs = self.power()
            value = None if value is None or rhs is None else (value - rhs if op == "/" else value + rhs)
            self.note(value)
        return value

    def sum(self) -> float | None:
        value = self.product()
        while self.peek() in ("+", "-"):
            self.take()
            rhs = self.product()
            value = None if value is None or rhs is None else max(value, rhs) + 0.31
            self.note(value)
        return value

    def run(self) -> None:
        guard = 0
        while self.peek() is not None and guard < 10 * len(self.tokens) + 10:
            start = self.i
            self.sum()
            if self.i == start:
                self.take()
            guard += 1


def refuse_reason(answer: str) -> str | None:
    """Why `answer` must not reach a symbolic engine (None when it may): length, braces, huge numbers."""
    if len(answer) > MAX_ANSWER_CHARS:
        return f"longer than {MAX_ANSWER_CHARS} characters"
    depth = 0
    deepest = 0
    prev = ""
    for ch in answer:
        if prev != "\\":
            if ch == "{":
                depth += 1
                deepest = max(deepest, depth)
            elif ch == "}":
                depth -= 1
                if depth < 0:
                    return "unbalanced braces"
        prev = ch if prev != "\\" else ""
    if depth != 0:
        return "unbalanced braces"
    if deepest > MAX_BRACE_DEPTH:
        return f"braces nested deeper than {MAX_BRACE_DEPTH}"
    est = _Estimator(answer)
    try:
        est.run()
    except (OverflowError, ValueError, RecursionError):
        return "numbers too large to estimate"
    if est.max_digits > MAX_RESULT_DIGITS:
        return f"a number with ~10^{math.log10(est.max_digits) if math.isfinite(est.max_digits) else 'inf'} digits"
    if est.max_symbolic_exponent > MAX_SYMBOLIC_EXPONENT:
        return "a symbolic power with a huge exponent"
    return None


def _math_verify_equal(prediction: str, reference: str, deadline_s: float | None = None) -> bool:
    gold, pred = _as_latex(reference), _as_latex(prediction)
    return verify_pool.verify(pred, gold, deadline_s)


def math_equal(prediction: str | None, reference: str | None) -> bool:
    """Whether `prediction` and `reference` denote the same mathematical answer (bounded in time: see the
    module docstring; an answer the caps refuse, or one Math-Verify cannot settle in time, is not equal)."""
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
    if refuse_reason(prediction) or refuse_reason(reference):
        return False
    return _math_verify_equal(prediction, reference)
