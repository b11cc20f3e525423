"""The one code sandbox of infir (synthesis and evaluation): run an untrusted Python program safely.

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

Tests are `assert` statements inside `source`: exit code 0 means passed.

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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from infir.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["SandboxResult", "STATUSES", "isolation_mode", "run_program", "run_programs"]
STATUSES = ("passed", "failed", "timeout", "error")
SETUP_ERROR = 197  # keep equal to init.SETUP_ERROR
_INIT = Path(__file__).with_name("init.py")


@dataclass
class SandboxResult:
    status: str  # passed | failed | timeout | error
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: str  # "namespaces" or "fallback"
    truncated: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


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
        return f"probe failed ({result.status}): {result.stderr.strip()[-300:]}"
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


def _status(returncode: int | None, timed_out: bool) -> str:
    if timed_out or returncode in (128 + signal.SIGXCPU, -signal.SIGXCPU):
        return "timeout"
    if returncode == SETUP_ERROR:
        return "error"
    return "passed" if returncode == 0 else "failed"


def _run(source: str, timeout_s: float, memory_mb: int, isolation: str, max_output: int = 65536,
         file_mb: int = 16, nproc: int = 64) -> SandboxResult:
    cpu_s = max(1, math.ceil(timeout_s)) + 1
    with tempfile.TemporaryDirectory(prefix="infir-sandbox-") as tmp:
        run_dir = Path(tmp)
        program = run_dir / "program.py"
        out_path, err_path = run_dir / "stdout", run_dir / "stderr"
        if isolation == "namespaces":
            program.write_text(source, encoding="utf-8")
            (run_dir / "root").mkdir()
            spec = {"root": str(run_dir / "root"), "program": str(program), "binds": _python_binds(),
                    "python": sys.executable, "uid": 200_000 + secrets.randbelow(1_000_000_000),
                    "cpu_s": cpu_s, "memory_mb": memory_mb, "file_mb": file_mb, "nproc": nproc,
                    "tmpfs_mb": 64}
            cmd = ["unshare", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                   "--propagation", "private", sys.executable, "-I", "-S", str(_INIT), json.dumps(spec)]
            cwd, preexec = run_dir, None
        else:
            work = run_dir / "work"
            work.mkdir()
            program = work / "program.py"
            program.write_text(_GUARD + source, encoding="utf-8")
            cmd = [sys.executable, "-I", "program.py"]
            cwd = work

            def preexec() -> None:
                _fallback_limits(cpu_s, memory_mb, file_mb)

        start = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, preexec_fn=preexec, env=_fallback_env(work=cwd))
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:  # everything it started, even when it finished (no lingering daemons)
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        duration = time.monotonic() - start
        stdout, t1 = _read_capped(out_path, max_output)
        stderr, t2 = _read_capped(err_path, max_output)
    return SandboxResult(_status(proc.returncode, timed_out), proc.returncode, stdout, stderr,
                         round(duration, 4), isolation, t1 or t2)


def _fallback_env(work: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


def run_program(source: str, timeout_s: float = 10, memory_mb: int = 1024, *, max_output: int = 65536,
                isolation: str | None = None) -> SandboxResult:
    """Run one Python program in the sandbox; status is passed / failed / timeout / error.

    `isolation` forces "namespaces" or "fallback" (default: the best available, see `isolation_mode`).
    """
    mode = isolation or isolation_mode()
    try:
        return _run(source, timeout_s, memory_mb, mode, max_output=max_output)
    except OSError as e:
        return SandboxResult("error", None, "", f"infir-sandbox: could not start: {e}", 0.0, mode)


def run_programs(sources: Sequence[str], timeout_s: float = 10, memory_mb: int = 1024,
                 max_workers: int | None = None, isolation: str | None = None) -> list[SandboxResult]:
    """Run many programs, at most `max_workers` at a time (default: CPU count); results in input order."""
    if not sources:
        return []
    mode = isolation or isolation_mode()
    workers = max(1, min(len(sources), max_workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run_program(s, timeout_s, memory_mb, isolation=mode), sources))
