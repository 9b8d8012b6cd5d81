"""Run untrusted Python (model-written programs, their unit tests) in a contained process.

Each run gets:
- its own network namespace (only a loopback that is down: nothing, not even 127.0.0.1, is
  reachable), PID namespace (when the program ends or is killed, every process it started dies)
  and mount namespace in which every mount is read-only except a fresh temporary folder, its cwd;
- no capabilities (bounding set emptied, no_new_privs), so it cannot undo any of that;
- limits: wall clock, CPU seconds, address space (RLIMIT_AS), file size (RLIMIT_FSIZE, which also
  caps its stdout and stderr) and number of processes (RLIMIT_NPROC; for a real root, which that
  limit exempts, a `pids` cgroup);
- a scrubbed environment (PATH, HOME, TMPDIR, LANG, one math-library thread) and Python's
  isolated mode.

Isolation is probed once per process, in this order: `unshare` with a user namespace (root, and
clusters that allow unprivileged user namespaces), then without one (real root). When neither
works, or a real root has no writable `pids` cgroup, every run raises SandboxUnavailable: code is
never run unconfined unless the user opts out explicitly with MTL_SANDBOX=none (the evaluation
step sets it from the config key evaluation.sandbox; limits, folder and environment still apply
then; network, other processes and the filesystem are reachable).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ENV_SWITCH = "MTL_SANDBOX"  # "auto" (default) or "none" (explicit opt-out)
_NAMESPACES = ["--mount", "--net", "--pid", "--fork", "--kill-child"]
_PROBE_PROGRAMS = (
    ["unshare", "--user", "--map-root-user", *_NAMESPACES],
    ["unshare", *_NAMESPACES],
)
_READY = b"ready"

# Runs before the program, in the new namespaces (as their PID 1) unless the user opted out:
# joins the process-count cgroup, makes every mount read-only but the work folder, sets the
# limits, drops every capability, then execs the program's interpreter. Doing this here rather
# than in a preexec_fn keeps spawning safe from threads (the coding scorers run samples in
# parallel). It reports "ready" on a status fd just before exec, so a failed setup is never
# mistaken for a failing program. argv: work folder, status fd, isolate (0/1), cgroup folder
# ("-" for none), then the limits: processes (0 = none), CPU s, address space, file size (bytes);
# then the python flags.
_BOOT = r"""
import ctypes, os, sys, resource
work, status, isolate, cgroup = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
nproc, cpu, memory, size = (int(x) for x in sys.argv[5:9])
flags = sys.argv[9:]
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
KEEP = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
        "relatime": 1 << 21}
def fail(what):
    err = ctypes.get_errno()
    sys.stderr.write(f"mtl-sandbox setup: {what}: {os.strerror(err)}\n")
    sys.exit(125)
if cgroup != "-":
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
        procs.write("0")  # this process; its children inherit the cgroup
if isolate:
    if libc.mount(work.encode(), work.encode(), None, MS_BIND, None):
        fail(f"bind {work}")
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        if point == work or "ro" in fields[5].split(","):
            continue
        # Flags the parent namespace locked (nosuid, nodev, ...) must be kept on a remount.
        extra = sum(KEEP.get(opt, 0) for opt in fields[5].split(","))
        if libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | extra, None):
            fail(f"read-only remount of {point}")
for limit, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory),
                     (resource.RLIMIT_FSIZE, size), (resource.RLIMIT_CORE, 0),
                     (resource.RLIMIT_NPROC, nproc)):
    if limit != resource.RLIMIT_NPROC or nproc:
        resource.setrlimit(limit, (value, value))
if isolate:
    for cap in range(64):
        # PR_CAPBSET_DROP; EINVAL means past the kernel's last capability.
        if libc.prctl(24, cap, 0, 0, 0) and ctypes.get_errno() == 22:
            break
    if libc.prctl(38, 1, 0, 0, 0):  # PR_SET_NO_NEW_PRIVS
        fail("no_new_privs")
os.chdir(work)
os.write(status, b"ready")
os.close(status)
os.execv(sys.executable, [sys.executable, *flags, "main.py"])
"""


class SandboxUnavailable(RuntimeError):
    """No isolation could be set up, and the user did not opt out of it."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: int | None = None  # default: the wall-clock limit, rounded up
    memory_mb: int = 1024
    max_procs: int = 32
    file_size_mb: int = 16
    output_chars: int = 100_000


@dataclass(frozen=True)
class Result:
    """What happened: status is ok (exit 0), error (non-zero exit), timeout or killed (signal)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reason(self) -> str:
        """The program's last error line (e.g. 'MemoryError'), or the status."""
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines and self.status == "error" else self.status


@dataclass(frozen=True)
class _Isolation:
    prefix: list[str]  # the command that enters the namespaces; [] when opted out
    cgroup_parent: Path | None  # a `pids` cgroup folder for a real root, whom NPROC exempts


def _pids_cgroup() -> Path | None:
    """This process's `pids` cgroup folder, if one is mounted and writable (v1 or v2)."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path
    candidates = []
    for controllers, path in own.items():
        if "pids" in controllers.split(","):
            candidates.append(Path("/sys/fs/cgroup/pids") / path.lstrip("/"))
    if "" in own:  # cgroup v2: only when pids is delegated to our children
        folder = Path("/sys/fs/cgroup") / own[""].lstrip("/")
        with contextlib.suppress(OSError):
            if "pids" in (folder / "cgroup.subtree_control").read_text().split():
                candidates.append(folder)
    return next((c for c in candidates if os.access(c, os.W_OK)), None)


@functools.cache
def _isolation() -> _Isolation:
    choice = os.environ.get(ENV_SWITCH, "auto")
    if choice == "none":
        return _Isolation([], None)
    if choice != "auto":
        raise SandboxUnavailable(f"{ENV_SWITCH}={choice!r}: expected 'auto' or 'none'")
    cgroup = _pids_cgroup() if os.geteuid() == 0 else None
    if os.geteuid() == 0 and cgroup is None:
        raise SandboxUnavailable(
            "running as root, where RLIMIT_NPROC does not apply, and no writable pids cgroup "
            "was found to limit processes; run as another user, or set evaluation.sandbox: "
            "none in the config (MTL_SANDBOX=none outside the workflow) to run model-written "
            "code unconfined")
    problems = []
    for prefix in _PROBE_PROGRAMS:
        if shutil.which(prefix[0]) is None:
            problems.append(f"{prefix[0]}: not installed")
            break
        try:
            probe = _run(_Isolation(prefix, cgroup), "print(6 * 7)", Limits(timeout_s=20),
                         site=False)
        except SandboxUnavailable as err:
            problems.append(f"{' '.join(prefix)}: {err}")
            continue
        if probe.ok and probe.stdout.strip() == "42":
            return _Isolation(prefix, cgroup)
        problems.append(f"{' '.join(prefix)}: probe {probe.status}: {probe.stderr.strip()}")
    raise SandboxUnavailable(
        "no isolation for model-written code (network, process and filesystem namespaces): "
        + "; ".join(problems) + ". To run it unconfined, set evaluation.sandbox: none in the "
        f"config ({ENV_SWITCH}=none outside the workflow).")


def run_python(source: str, limits: Limits | None = None, *, site: bool = False) -> Result:
    """Run `source` as a script in a fresh folder, contained; `site`: see site-packages."""
    return _run(_isolation(), source, limits or Limits(), site=site)


def _own_processes() -> int:
    uid = os.getuid()
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit()
               and _owner(p) == uid)


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _run(isolation: _Isolation, source: str, limits: Limits, *, site: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="mtl-sandbox-") as tmp:
        root = Path(tmp)
        work = root / "work"
        work.mkdir()
        (work / "main.py").write_text(source)
        cgroup = None
        if isolation.cgroup_parent is not None:
            cgroup = isolation.cgroup_parent / f"mtl-sandbox-{uuid.uuid4().hex}"
            cgroup.mkdir()
            (cgroup / "pids.max").write_text(str(limits.max_procs))
        try:
            return _execute(isolation, work, limits, cgroup, site)
        finally:
            if cgroup is not None:
                _remove_cgroup(cgroup)


def _execute(isolation: _Isolation, work: Path, limits: Limits, cgroup: Path | None,
             site: bool) -> Result:
    flags = ["-I"] if site else ["-I", "-S"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
           # One math-library thread: their per-thread buffers would exhaust the memory limit
           # on many-core nodes (tests importing numpy).
           **{var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    started = time.monotonic()
    with open(work.parent / "stdout", "wb+") as out, open(work.parent / "stderr", "wb+") as err, \
            open(work.parent / "ready", "wb+") as ready:
        if isolation.prefix and cgroup is None:
            # Inside a user namespace RLIMIT_NPROC counts that namespace's processes only.
            nproc = limits.max_procs
        elif not isolation.prefix and os.geteuid() != 0:
            # Unconfined, RLIMIT_NPROC counts every process of this user: allow the ones we have.
            nproc = _own_processes() + limits.max_procs
        else:
            nproc = 0  # a pids cgroup limits a real root, whom RLIMIT_NPROC exempts
        cpu = limits.cpu_s if limits.cpu_s is not None else math.ceil(limits.timeout_s)
        command = [*isolation.prefix, sys.executable, "-I", "-S", "-c", _BOOT, str(work),
                   str(ready.fileno()), "1" if isolation.prefix else "0",
                   str(cgroup) if cgroup is not None else "-", str(nproc), str(cpu),
                   str(limits.memory_mb * 2**20), str(limits.file_size_mb * 2**20), *flags]
        process = subprocess.Popen(
            command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            pass_fds=(ready.fileno(),), start_new_session=True,
        )
        status = None
        try:
            returncode = process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            status = "timeout"
            # Killing the session leader's group; `--kill-child` then takes PID 1 of the
            # namespace, and with it every process the program started.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
        seconds = time.monotonic() - started
        stdout, stderr = _read(out, limits), _read(err, limits)
        ready.seek(0)
        if status is None and ready.read() != _READY:
            raise SandboxUnavailable(f"setup failed (exit {returncode}): {stderr.strip()}")
    if status is None:
        status = "ok" if returncode == 0 else "killed" if returncode < 0 else "error"
    return Result(status, returncode, stdout, stderr, seconds)


def _read(handle, limits: Limits) -> str:
    handle.seek(0)
    return handle.read(limits.output_chars * 4).decode("utf-8", "replace")[:limits.output_chars]


def _remove_cgroup(cgroup: Path) -> None:
    """Kill whatever is left in the cgroup, then remove it (it empties within moments)."""
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError):
            for pid in (cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            cgroup.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
