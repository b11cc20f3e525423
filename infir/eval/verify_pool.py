"""Math-Verify in worker subprocesses with a hard deadline: the last guard that keeps a grader from hanging.

A comparison still running at the deadline (MATH_VERIFY_DEADLINE_S) is killed with its worker (SIGKILL) and counts
as "not equal"; a fresh worker replaces it. Math-Verify's own SIGALRM timeouts work in the workers (each runs it
on its main thread), so most slow comparisons end without a restart. Workers die with the process that started
them (PR_SET_PDEATHSIG; stdin EOF), and a forked child starts its own pool. Where no worker can start, comparisons
fall back to in-process Math-Verify (no time bound off the main thread), with a warning.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading

from infir.utils.log import get_logger

log = get_logger(__name__)

MATH_VERIFY_DEADLINE_S = float(os.environ.get("INFIR_GRADER_DEADLINE_S", "3.0"))
_INNER_TIMEOUT_S = max(1, int(MATH_VERIFY_DEADLINE_S) - 1)  # Math-Verify's own alarm inside the worker


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


def verify(prediction: str, reference: str, deadline_s: float | None = None) -> bool:
    """Math-Verify's verdict on two LaTeX answers, "not equal" once `deadline_s` (default
    MATH_VERIFY_DEADLINE_S) has passed."""
    verdict = _POOL.verify(prediction, reference, MATH_VERIFY_DEADLINE_S if deadline_s is None else deadline_s)
    if verdict is None:
        return _math_verify_in_process(prediction, reference)
    return verdict
