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
2. Math-Verify itself runs in a small pool of worker subprocesses (`_VerifyPool`) with a hard deadline
   (MATH_VERIFY_DEADLINE_S): a comparison that is still running then is killed with its worker (SIGKILL) and
   counts as "not equal"; a fresh worker replaces it. Math-Verify's own SIGALRM timeouts work there (each worker
   runs it on its main thread), so most slow comparisons end without a restart. Workers die with the process
   that started them (PR_SET_PDEATHSIG; stdin EOF), and a forked child starts its own pool.
   Measured cost (bench/verdicts.py, bench/RESULTS.md): 1,000 MATH-500 comparisons take 1.07x the wall time
   and 1.05x the CPU time of in-process Math-Verify (warm, on a saturated 2-core machine); verdicts identical.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import subprocess
import sys
import threading
from fractions import Fraction

from infir.utils.log import get_logger

log = get_logger(__name__)

MAX_ANSWER_CHARS = 1000  # longer answers are compared as normalised text only
MAX_BRACE_DEPTH = 40
MAX_RESULT_DIGITS = 100_000  # a number written in the answer may have at most this many digits
MAX_SYMBOLIC_EXPONENT = 100_000  # x^{N} with N above this is not handed to SymPy at all
MATH_VERIFY_DEADLINE_S = float(os.environ.get("INFIR_GRADER_DEADLINE_S", "3.0"))
_INNER_TIMEOUT_S = max(1, int(MATH_VERIFY_DEADLINE_S) - 1)  # Math-Verify's own alarm inside the worker

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


# ---------------------------------------------------------------------------------------------------------------
# Math-Verify in worker subprocesses with a hard deadline.
# ---------------------------------------------------------------------------------------------------------------

_WORKER = r"""
import ctypes, json, os, signal, sys
try:  # die with the thread that started us (the pool's spawner thread lives as long as its process)
    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
from math_verify import parse, verify
out = sys.stdout
out.write("ready\n")
out.flush()
for line in sys.stdin:
    try:
        req = json.loads(line)
        t = int(req["t"])
        gold = parse(req["r"], parsing_timeout=t)
        pred = parse(req["p"], parsing_timeout=t)
        ok = bool(gold and pred and verify(gold, pred, timeout_seconds=t))
    except BaseException:
        ok = False
    out.write("1\n" if ok else "0\n")
    out.flush()
"""


class _Worker:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.buffer = b""

    def read_line(self, deadline: float) -> bytes | None:
        """One line from the worker, or None when the deadline passes or the worker is gone."""
        import time

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


class _VerifyPool:
    """Idle Math-Verify workers of this process; more are started while all are busy, up to `size`."""

    STARTUP_S = 120.0  # importing SymPy on a loaded 2-core machine can take a while

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[_Worker] = []
        self.count = 0
        self.size = max(2, os.cpu_count() or 1)
        self.broken: str | None = None
        self.workers: set[_Worker] = set()
        self.requests: list[tuple[threading.Event, list]] = []
        self.spawner: threading.Thread | None = None

    # Workers are started by one long-lived daemon thread: PR_SET_PDEATHSIG fires when the *thread* that
    # started a worker ends, and grading often runs in short-lived pool threads.
    def _spawner_loop(self) -> None:
        while True:
            with self.cond:
                while not self.requests:
                    self.cond.wait()
                done, box = self.requests.pop(0)
            try:
                box.append(subprocess.Popen(
                    [sys.executable, "-c", _WORKER, str(os.getpid())], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0))
            except OSError as e:
                box.append(e)
            done.set()

    def _start(self) -> _Worker:
        import time

        done, box = threading.Event(), []
        with self.cond:
            if self.spawner is None:
                self.spawner = threading.Thread(target=self._spawner_loop, name="infir-grader-spawner",
                                                daemon=True)
                self.spawner.start()
            self.requests.append((done, box))
            self.cond.notify_all()
        done.wait()
        if isinstance(box[0], OSError):
            raise box[0]
        worker = _Worker(box[0])
        with self.cond:
            self.workers.add(worker)
        if worker.read_line(time.monotonic() + self.STARTUP_S) != b"ready":
            worker.kill()
            raise OSError("the Math-Verify worker did not start (is math-verify installed?)")
        return worker

    def acquire(self) -> _Worker:
        with self.cond:
            while not self.idle and self.count >= self.size:
                self.cond.wait()
            if self.idle:
                return self.idle.pop()
            self.count += 1
        try:
            return self._start()
        except BaseException:
            with self.cond:
                self.count -= 1
                self.cond.notify_all()
            raise

    def release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self.cond:
            if not healthy:
                self.workers.discard(worker)
            if healthy:
                self.idle.append(worker)
            else:
                self.count -= 1
            self.cond.notify_all()

    def verify(self, prediction: str, reference: str, deadline_s: float) -> bool | None:
        """Math-Verify's verdict, False after the deadline, None when no worker can run here."""
        import time

        if self.broken is not None:
            return None
        try:
            worker = self.acquire()
        except OSError as e:
            self.broken = str(e)
            log.warning("math grading falls back to in-process Math-Verify (no time bound off the main "
                        "thread): %s", e)
            return None
        request = json.dumps({"p": prediction, "r": reference, "t": _INNER_TIMEOUT_S}) + "\n"
        healthy = False
        try:
            assert worker.proc.stdin is not None
            worker.proc.stdin.write(request.encode())
            answer = worker.read_line(time.monotonic() + deadline_s)
            healthy = answer is not None
            return answer == b"1"
        except OSError:
            return False
        finally:
            self.release(worker, healthy)

    def close(self) -> None:
        with self.cond:
            idle, self.idle = self.idle, []
            self.count -= len(idle)
        for worker in idle:
            worker.kill()


_POOL = _VerifyPool()


def _reset_pool_in_child() -> None:
    """A forked child must not share its parent's workers (or a lock another thread held at fork time): it
    closes its copies of their pipes (the workers stay the parent's) and starts a pool of its own."""
    global _POOL
    for worker in list(_POOL.workers):
        for stream in (worker.proc.stdin, worker.proc.stdout):
            try:
                if stream is not None:
                    os.close(stream.fileno())
            except (OSError, ValueError):
                pass
    _POOL = _VerifyPool()


os.register_at_fork(after_in_child=_reset_pool_in_child)


def _math_verify_in_process(prediction: str, reference: str) -> bool:
    from math_verify import parse, verify

    # Math-Verify's timeouts use SIGALRM, which only works on the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(reference, parsing_timeout=timeout)
        pred = parse(prediction, parsing_timeout=timeout)
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - a grader must never crash an eval; unparseable = not equal
        return False


def _math_verify_equal(prediction: str, reference: str, deadline_s: float | None = None) -> bool:
    gold, pred = _as_latex(reference), _as_latex(prediction)
    verdict = _POOL.verify(pred, gold, MATH_VERIFY_DEADLINE_S if deadline_s is None else deadline_s)
    if verdict is None:
        return _math_verify_in_process(pred, gold)
    return verdict


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
