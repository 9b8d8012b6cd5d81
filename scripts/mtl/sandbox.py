"""Run untrusted Python (model-written programs, their unit tests) in a contained process.

Each run gets:
- its own network namespace (only a loopback that is down: nothing, not even 127.0.0.1, is
  reachable), PID namespace (when the program ends or is killed, every process it started dies)
  and mount namespace in which every mount is read-only except a fresh temporary folder, its cwd;
- no capabilities (bounding set emptied, no_new_privs), so it cannot undo any of that;
- limits: wall clock, CPU seconds, address space (RLIMIT_AS), file size (RLIMIT_FSIZE, which also
  caps its stdout and stderr) and number of processes (RLIMIT_NPROC; for a real root, which that
  limit exempts, a `pids` cgroup of its own);
- a scrubbed environment (PATH, HOME, TMPDIR, LANG, one math-library thread) and a fresh Python
  interpreter in isolated mode.

Programs are started by a launcher: one small Python process per evaluating process, started on
the first run inside the namespaces (`unshare`), with every mount but its scratch folder made
read-only. For each program it forks a handler that enters new mount, PID and network
namespaces, leaves only the program's own folder writable, and forks the program, which sets its
limits, drops every capability and execs Python. That costs one Python start per program
instead of two plus a namespace set-up (≈ 20 ms instead of ≈ 80: a toy evaluation job runs
≈ 60 programs). Without a `pids` cgroup (unprivileged users), RLIMIT_NPROC counts the
processes of every program running at that moment in the launcher's user namespace.

Isolation is probed once per process, in this order: `unshare` with a user namespace (root, and
clusters that allow unprivileged user namespaces), then without one (real root). When neither
works, or a real root has no writable `pids` cgroup, every run raises SandboxUnavailable: code is
never run unconfined unless the user opts out explicitly with MTL_SANDBOX=none (the evaluation
step sets it from the config key evaluation.sandbox; limits, folder and environment still apply
then; network, other processes and the filesystem are reachable).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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

# The launcher program (mtl/sandbox_launcher.py), handed to `python -I -S -c` as text: it needs
# no path of the library inside the sandbox's namespaces.
_LAUNCHER = Path(__file__).with_name("sandbox_launcher.py").read_text()


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
    prefix: tuple[str, ...]  # the command that enters the namespaces; () when opted out
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
        return _Isolation((), None)
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
        isolation = _Isolation(tuple(prefix), cgroup)
        try:
            probe = _launcher(isolation).run("print(6 * 7)", Limits(timeout_s=20), site=False)
        except SandboxUnavailable as err:
            problems.append(f"{' '.join(prefix)}: {err}")
            continue
        if probe.ok and probe.stdout.strip() == "42":
            return isolation
        _discard(isolation)
        problems.append(f"{' '.join(prefix)}: probe {probe.status}: {probe.stderr.strip()}")
    raise SandboxUnavailable(
        "no isolation for model-written code (network, process and filesystem namespaces): "
        + "; ".join(problems) + ". To run it unconfined, set evaluation.sandbox: none in the "
        f"config ({ENV_SWITCH}=none outside the workflow).")


def probe() -> None:
    """Raise SandboxUnavailable now, as the first run would, unless programs can run contained."""
    _isolation()


def run_python(source: str, limits: Limits | None = None, *, site: bool = False) -> Result:
    """Run `source` as a script in a fresh folder, contained; `site`: see site-packages."""
    return _launcher(_isolation()).run(source, limits or Limits(), site=site)


_LAUNCHERS: dict[tuple[int, _Isolation], _Launcher] = {}
_LAUNCHERS_LOCK = threading.Lock()


def _launcher(isolation: _Isolation) -> _Launcher:
    """This process's running launcher for `isolation`, started (again) when needed."""
    key = (os.getpid(), isolation)  # a forked child starts its own
    with _LAUNCHERS_LOCK:
        launcher = _LAUNCHERS.get(key)
        if launcher is None or not launcher.alive():
            if launcher is not None:
                launcher.close()
            launcher = _LAUNCHERS[key] = _Launcher(isolation)
        return launcher


def _discard(isolation: _Isolation) -> None:
    with _LAUNCHERS_LOCK:
        launcher = _LAUNCHERS.pop((os.getpid(), isolation), None)
    if launcher is not None:
        launcher.close()


@atexit.register
def _close_launchers() -> None:
    for (pid, _), launcher in list(_LAUNCHERS.items()):
        if pid == os.getpid():
            launcher.close()


class _Launcher:
    """The launcher process (see _LAUNCHER) and its scratch folder."""

    def __init__(self, isolation: _Isolation) -> None:
        self.isolation = isolation
        self.scratch = Path(tempfile.mkdtemp(prefix="mtl-sandbox-"))
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Open as long as the launcher runs (its stderr); close() closes it.
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115
        command = [*isolation.prefix, sys.executable, "-I", "-S", "-c", _LAUNCHER,
                   str(self.scratch), "1" if isolation.prefix else "0", str(theirs.fileno())]
        try:
            self.process = subprocess.Popen(
                command, cwd=self.scratch, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.errors,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        finally:
            theirs.close()
        self.channel.settimeout(30)
        try:
            ready = self.channel.recv(16)
        except OSError:
            ready = b""
        self.channel.settimeout(None)
        if ready != _READY:
            self.errors.seek(0)
            problem = self.errors.read().decode(errors="replace").strip()
            self.close()
            raise SandboxUnavailable(f"setup failed (exit {self.process.returncode}): {problem}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.channel.close()  # the launcher exits when its channel closes
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.errors.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def run(self, source: str, limits: Limits, *, site: bool) -> Result:
        run = Path(tempfile.mkdtemp(dir=self.scratch))
        work = run / "work"
        work.mkdir()
        (work / "main.py").write_text(source)
        cgroup = None
        if self.isolation.cgroup_parent is not None:
            cgroup = self.isolation.cgroup_parent / f"mtl-sandbox-{uuid.uuid4().hex}"
            cgroup.mkdir()
            (cgroup / "pids.max").write_text(str(limits.max_procs))
        try:
            return self._execute(work, limits, cgroup, site)
        finally:
            if cgroup is not None:
                _remove_cgroup(cgroup)
            shutil.rmtree(run, ignore_errors=True)

    def _execute(self, work: Path, limits: Limits, cgroup: Path | None, site: bool) -> Result:
        isolated = bool(self.isolation.prefix)
        if isolated and cgroup is None:
            # Inside the user namespace RLIMIT_NPROC counts its processes: the launcher, this
            # run's handler, and the programs running now.
            nproc = limits.max_procs + 2
        elif not isolated and os.geteuid() != 0:
            # Unconfined, RLIMIT_NPROC counts every process of this user: allow the ones we have.
            nproc = _own_processes() + limits.max_procs
        else:
            nproc = 0  # a pids cgroup limits a real root, whom RLIMIT_NPROC exempts
        request = {
            "work": str(work), "timeout": limits.timeout_s, "nproc": nproc,
            "cpu": limits.cpu_s if limits.cpu_s is not None else math.ceil(limits.timeout_s),
            "memory": limits.memory_mb * 2**20, "size": limits.file_size_mb * 2**20,
            "flags": ["-I"] if site else ["-I", "-S"],
            "env": {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
                    "LANG": "C.UTF-8",
                    # One math-library thread: their per-thread buffers would exhaust the
                    # memory limit on many-core nodes (tests importing numpy).
                    **{var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                            "MKL_NUM_THREADS")}},
        }
        started = time.monotonic()
        with open(work.parent / "stdout", "wb+") as out, \
                open(work.parent / "stderr", "wb+") as err, \
                contextlib.ExitStack() as stack:
            fds = [out.fileno(), err.fileno()]
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            stack.enter_context(mine)
            with theirs:
                fds.append(theirs.fileno())
                if cgroup is not None:
                    procs = stack.enter_context(open(cgroup / "cgroup.procs", "wb"))
                    fds.append(procs.fileno())
                try:
                    socket.send_fds(self.channel, [json.dumps(request).encode()], fds)
                except OSError as error:
                    raise SandboxUnavailable(f"the launcher is gone: {error}") from error
            # The handler enforces the wall clock; this only guards against a lost launcher.
            mine.settimeout(limits.timeout_s + 30)
            try:
                reply = mine.recv(1 << 16)
            except TimeoutError:
                reply = b""
            seconds = time.monotonic() - started
            stdout, stderr = _read(out, limits), _read(err, limits)
        if not reply:
            raise SandboxUnavailable("the launcher did not answer (it died or hung)")
        answer = json.loads(reply)
        if answer["setup"]:
            raise SandboxUnavailable(f"setup failed: {answer['setup']}")
        returncode = answer["returncode"]
        if answer["timeout"]:
            status = "timeout"
        else:
            status = "ok" if returncode == 0 else "killed" if returncode < 0 else "error"
        return Result(status, returncode, stdout, stderr, seconds)


def _own_processes() -> int:
    uid = os.getuid()
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit()
               and _owner(p) == uid)


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


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
