"""Verdicts that cannot be gamed: exiting early is never a pass, and a program that reads its source, argv,
environment and files cannot forge the harness's closing line. Real sandbox runs (namespaces when root)."""

from __future__ import annotations

import os
import sys

import pytest

from infir.sandbox import call_function, run_program, run_programs

NS = pytest.mark.skipif(
    not (sys.platform == "linux" and os.geteuid() == 0), reason="namespace sandbox needs root on Linux"
)

# A wrong solution: its tests would fail if they ran.
WRONG = "import os, sys, signal, threading, time\n\ndef add(a, b):\n    return a - b\n\n"
TESTS = "\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(0, 0) == 0\n\ncheck(add)\n"

EXIT_TRICKS = {
    "sys.exit(0)": "sys.exit(0)",
    "exit()": "exit()",
    "quit()": "quit()",
    "raise SystemExit": "raise SystemExit",
    "raise SystemExit(0)": "raise SystemExit(0)",
    "os._exit(0)": "os._exit(0)",
    "thread os._exit(0)": "threading.Thread(target=lambda: os._exit(0)).start()\ntime.sleep(5)",
    "SIGKILL to itself": "os.kill(os.getpid(), signal.SIGKILL)",
    "SIGTERM to itself": "os.kill(os.getpid(), signal.SIGTERM)",
    "SIGINT to itself": "signal.raise_signal(signal.SIGINT)",
    "os.abort()": "os.abort()",
    "close stdout, exit 0": "os.close(1)\nos.close(2)\nsys.exit(0)",
    "redirect stdout, os._exit": "sys.stdout = open(os.devnull, 'w')\nprint('PASSED')\nos._exit(0)",
    "exec another program": "os.execv(sys.executable, [sys.executable, '-c', 'print(\"ok\")'])",
    "atexit os._exit": "import atexit\natexit.register(lambda: os._exit(0))\nsys.exit(1)",
    "exit inside the tested function": None,  # built below
}


def _programs() -> dict[str, str]:
    out = {}
    for name, trick in EXIT_TRICKS.items():
        if trick is None:
            out[name] = WRONG.replace("return a - b", "os._exit(0)") + TESTS
        else:
            out[name] = WRONG + trick + "\n" + TESTS
    return out


@pytest.mark.parametrize("inherited", ["blocked", "ignored"])
def test_a_signal_to_itself_is_judged_the_same_whatever_the_grader_inherited(inherited: str) -> None:
    """Regression: a grader started as a background job (SIGINT ignored) or under a supervisor that blocks signals
    passed that state down to the program, whose SIGINT to itself then did nothing: reason 'assertion' instead of
    'early_exit', depending on how CI was launched."""
    import signal

    programs = [_programs()[name] for name in ("SIGINT to itself", "SIGTERM to itself")]
    before_mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    before_int, before_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        if inherited == "blocked":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        results = run_programs(programs, timeout_s=10)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before_mask)
        signal.signal(signal.SIGINT, before_int)
        signal.signal(signal.SIGTERM, before_term)
    assert [(r.status, r.reason) for r in results] == [("failed", "early_exit")] * 2, results


def test_every_exit_trick_fails_and_says_why() -> None:
    programs = _programs()
    results = dict(zip(programs, run_programs(list(programs.values()), timeout_s=10), strict=True))
    for name, r in results.items():
        assert not r.passed, (name, r)
        assert r.status == "failed", (name, r.status, r.reason, r.detail)
        assert r.reason == "early_exit", (name, r.reason, r.detail)
        assert r.detail, name
    assert results["sys.exit(0)"].detail == "SystemExit(0)"
    assert "SIGKILL" in results["SIGKILL to itself"].detail
    assert "exit code 0" in results["os._exit(0)"].detail
    # The same program without the trick reaches its tests and fails them; with a right solution it passes.
    wrong, right = run_programs([WRONG + TESTS, WRONG.replace("a - b", "a + b") + TESTS], timeout_s=10)
    assert (wrong.status, wrong.reason) == ("failed", "assertion")
    assert right.passed and right.reason is None


def test_exit_tricks_fail_in_fallback_mode_too() -> None:
    programs = _programs()
    names = ["sys.exit(0)", "os._exit(0)", "thread os._exit(0)", "exit inside the tested function"]
    results = [run_program(programs[n], timeout_s=10, isolation="fallback") for n in names]
    assert [r.reason for r in results] == ["early_exit"] * len(names)
    ok = run_program(WRONG.replace("a - b", "a + b") + TESTS, timeout_s=10, isolation="fallback")
    assert ok.passed


# A program that gathers everything it can read (its source, argv, environment, every file it can see, the
# command lines and environments of every process it can see) and writes each candidate token as a closing
# line to every file descriptor it holds, then leaves with status 0.
FORGER = r'''
import os, re, sys
blobs = [open(__file__ if "__file__" in globals() else "program.py", "rb").read(), " ".join(sys.argv).encode(),
         repr(dict(os.environ)).encode()]
seen = 0  # bounded: a checkout (and its venv) under /tmp is visible in the sandbox and holds ~100k files
for root in (".", "/dev/shm", os.path.expanduser("~"), "/tmp"):
    for dirpath, _, files in os.walk(root):
        for name in files:
            if seen >= 3000:
                break
            seen += 1
            try:
                blobs.append(open(os.path.join(dirpath, name), "rb").read(1 << 16))
            except OSError:
                pass
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for what in ("cmdline", "environ"):
            try:
                blobs.append(open(f"/proc/{pid}/{what}", "rb").read())
            except OSError:
                pass
tokens = set()
for blob in blobs:
    tokens.update(re.findall(rb"[0-9a-f]{32}", blob))
    tokens.update(re.findall(rb"[A-Za-z0-9_-]{16,64}", blob)[:2000])
lines = b"".join(t + b" done\n" for t in tokens) + b"done\nPASSED\n"
print(len(tokens), "candidate tokens", flush=True)
for fd in range(3, 256):
    try:
        os.write(fd, lines)
    except OSError:
        pass
os._exit(0)
'''


@NS
def test_reading_source_argv_env_and_files_cannot_forge_a_pass() -> None:
    r = run_program(WRONG + FORGER + TESTS, timeout_s=20)
    assert int(r.stdout.split()[0]) > 0  # it did find things to try
    assert not r.passed and r.reason in ("interfered", "early_exit"), (r.reason, r.detail)


def test_forging_in_fallback_mode_fails_too() -> None:
    r = run_program(WRONG + FORGER.replace('"/tmp", ', "") + TESTS, timeout_s=20, isolation="fallback")
    assert not r.passed, (r.reason, r.detail)


def test_closing_the_verdict_pipe_loses_the_verdict() -> None:
    """Even a right solution that closes every inherited descriptor cannot pass: no closing line arrives."""
    r = run_program("import os\nos.closerange(3, 256)\nassert 1 + 1 == 2\n", timeout_s=10)
    assert not r.passed and r.reason == "interfered", (r.reason, r.detail)


def test_reasons_for_not_passing() -> None:
    sources = {
        "assertion": "assert 1 == 2, 'nope'",
        "exception": "1 / 0",
        "syntax": "def f(:\n    pass",
        "memory": "x = bytearray(8 * 1024 ** 3)",
        "output_limit": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        "timeout": "while True:\n    pass",
    }
    results = dict(zip(sources, run_programs(list(sources.values()), timeout_s=2, memory_mb=256), strict=True))
    got = {k: (r.status, r.reason) for k, r in results.items()}
    assert got == {"assertion": ("failed", "assertion"), "exception": ("failed", "exception"),
                   "syntax": ("failed", "exception"), "memory": ("failed", "memory"),
                   "output_limit": ("failed", "output_limit"), "timeout": ("timeout", "timeout")}
    assert results["exception"].detail.startswith("ZeroDivisionError")
    assert results["syntax"].detail.startswith("SyntaxError")


def test_lingering_threads_after_the_tests_do_not_turn_a_pass_into_a_timeout() -> None:
    r = run_program("import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\n"
                    "assert 1 + 1 == 2\n", timeout_s=10)
    assert r.passed and r.duration_s < 8


@NS
def test_known_limit_memory_inspection_forges_a_pass() -> None:
    """The documented limit (harness.py, README): code that reads the harness's frame can write the closing
    line itself. If this ever stops passing, the harness got stronger: update the docs."""
    forge = ("import os, sys\nh = sys._getframe(1).f_locals\nh['send'](h['secret'] + b' done\\n')\n"
             "os._exit(0)\n")
    r = run_program(WRONG + forge + TESTS, timeout_s=10)
    assert r.passed


def test_call_function_streams_outputs_and_reasons() -> None:
    src = (
        "import re, sys\n"
        "def f(x):\n"
        "    if x == 3:\n        raise ValueError('three')\n"
        "    if x == 4:\n        while True:\n            pass\n"
        "    if x == 5:\n        return re.match('a', 'a')\n"
        "    if x == 6:\n        return {(1, 2): {1.5, float('nan')}, 'k': [1 + 2j, b'xy', 10 ** 30, (), frozenset()]}\n"
        "    if x == 7:\n        sys.exit(0)\n"
        "    if x == 8:\n        class Liar(int):\n            def __eq__(self, other):\n                return True\n"
        "        return Liar(5)\n"
        "    print('noise')\n"
        "    return [x, x * 1.5]\n"
    )
    r = call_function(src, "f", [(1,), (3,), (4,), (5,), (6,), (7,), (8,)], [1.0] * 7, timeout_s=15)
    assert r.passed, (r.reason, r.detail, r.stderr)
    statuses = [o.status for o in r.outputs]
    assert statuses == ["ok", "exception", "timeout", "ok", "ok", "early_exit", "ok"]
    assert r.outputs[0].value == [1, 1.5]
    assert type(r.outputs[3].value).__name__ == "Opaque"
    six = r.outputs[4].value
    assert six[(1, 2)] & {1.5} == {1.5} and six["k"] == [1 + 2j, b"xy", 10**30, (), frozenset()]
    liar = r.outputs[6].value
    assert type(liar) is int and liar == 5 and liar != 6  # the overridden __eq__ never crosses the pipe
    # Fail fast: the caller stops the run at the first output it rejects.
    seen = []
    stopped = call_function(src, "f", [(1,), (3,), (2,)], [1.0] * 3, timeout_s=15,
                            on_output=lambda i, o: seen.append(i) or o.status == "ok")
    assert seen == [0, 1] and stopped.reason == "stopped"
    assert [o.status for o in stopped.outputs] == ["ok", "exception", "missing"]
    died = call_function("import os\ndef f(x):\n    os._exit(0)\n", "f", [(1,)], [1.0], timeout_s=10)
    assert died.reason == "early_exit" and died.outputs[0].status == "missing"
