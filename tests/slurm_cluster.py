"""A real, throwaway SLURM on localhost for tests: munge + slurmctld + slurmd, one fake GPU.

    with LocalSlurm() as cluster:          # installs (apt-get) if missing, starts, waits for idle
        subprocess.run(["sbatch", ...], env=cluster.env)   # cluster.env points at its slurm.conf
                                           # stops exactly the daemons it started

Everything lives in one temporary folder: slurm.conf, gres.conf, state, spool, logs, pid files,
a private munge key and socket. The daemons listen on free ports picked at start. Clients
(sbatch, squeue, scontrol, and Snakemake's SLURM plugin, which shells out to them) find this
cluster through ``SLURM_CONF`` in ``cluster.env``; ``srun`` inside jobs, whose environment the
jobstep plugin strips of SLURM_CONF, finds it through a /run/slurm/conf link (the place a
configless node keeps its configuration), made at start and removed at stop. So the machine must
have no /etc/slurm/slurm.conf of its own. The GPU is a scheduling fiction: gres.conf says
``File=/dev/null``, so jobs that ask for ``--gpus=1`` are placed and accounted as GPU jobs (one at
a time, with CUDA_VISIBLE_DEVICES=0) but get no device.

Needs root (daemons, apt-get) on Debian; ``unavailable_reason()`` says why not, for skips.
Written for Debian 12's packages (SLURM 22.05, munge 0.5.15).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

APT_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "sinfo"]
# The scheduler must keep finished jobs visible to `squeue`/`scontrol show job` long enough for
# Snakemake's squeue-based status checks (plugin: MinJobAge >= 3 x init-seconds) and for the
# test's own audit of every job after the run.
MIN_JOB_AGE = 3600
CONF_MARKER = "# Written by tests/slurm_cluster.py for a throwaway one-node test cluster."
DEFAULT_CONF = "/etc/slurm/slurm.conf"
NODE_CONF_LINK = "/run/slurm/conf"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here (the reason is the message)."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def unavailable_reason() -> str | None:
    """Why a local SLURM cannot be run here at all, or None if it can be tried."""
    if os.name != "posix" or not Path("/proc").is_dir():
        return "a local SLURM needs Linux"
    if os.geteuid() != 0:
        return "a local SLURM needs root (to install packages and start munged/slurmctld/slurmd)"
    if not all(_which(b) for b in BINARIES) and not (
        Path("/etc/debian_version").exists() and _which("apt-get")
    ):
        return "SLURM is not installed and this is not Debian with apt-get to install it"
    return None


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if not _which(b)]


def install(timeout: float = 600) -> None:
    """apt-get install the Debian packages if any binary is missing; raise SlurmUnavailable."""
    if not missing_binaries():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` failed: {err}") from err
        if proc.returncode != 0:
            raise SlurmUnavailable(
                f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stderr[-2000:]}"
            )
    if missing_binaries():
        raise SlurmUnavailable(f"installed {APT_PACKAGES} but still missing {missing_binaries()}")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmUnavailable("cannot read MemTotal from /proc/meminfo")


class LocalSlurm:
    """One-node SLURM (node ``localhost``, partition ``debug``) with one fake GPU (or none)."""

    node = "localhost"
    partition = "debug"

    def __init__(self, root: str | Path | None = None, gpus: int = 1, start_timeout: float = 90):
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="mtl-slurm-"))
        if gpus not in (0, 1):
            raise ValueError("one fake GPU (File=/dev/null) or none")
        self.gpus = gpus
        self.start_timeout = start_timeout
        self.cpus = _cpus()
        self.mem_mb = max(1000, _mem_mb() - 1024)  # slurmd drains the node if this is too high
        self.conf = self.root / "slurm.conf"
        self.log_dir = self.root / "log"
        self.munge_dir = self.root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self._procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if key != "SLURM_CONF":  # never inherit a surrounding job's or site's settings
                del self.env[key]

    # ---- configuration ---------------------------------------------------------------------

    def _write_config(self) -> None:
        self.root.chmod(0o711)  # munged runs as user munge and must reach its own folder
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.munge_dir.mkdir(exist_ok=True)
        self.munge_dir.chmod(0o755)  # the socket must be reachable; the key stays 0400
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        try:
            munge = pwd.getpwnam("munge")
        except KeyError:
            raise SlurmUnavailable("no user 'munge' (is the munge package installed?)") from None
        for path in (self.munge_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        self._munge_user = munge
        ctld_port, slurmd_port = _free_ports(2)
        r = self.root
        node = f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb}"
        node += " Gres=gpu:1 State=UNKNOWN" if self.gpus else " State=UNKNOWN"
        self.conf.write_text(
            f"""{CONF_MARKER}
ClusterName=mtltest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge={MIN_JOB_AGE}
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
{node}
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )
        # File=/dev/null keeps slurmd from dropping a GPU it cannot see (the node would drain).
        gres_conf = f"NodeName={self.node} Name=gpu File=/dev/null\n" if self.gpus else ""
        (r / "gres.conf").write_text(gres_conf)

    # ---- daemons ---------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], user: pwd.struct_passwd | None = None) -> None:
        """Start a daemon in the foreground as our own child (so stop() can reap it)."""
        log = open(self.log_dir / f"{name}.out", "w")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        self._procs[name] = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            **as_user,
        )  # fmt: skip

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(
                    f"{name} exited with {proc.returncode} during start-up\n{self.logs()}"
                )

    def _wait_for(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.3)
        raise SlurmUnavailable(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        proc = subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc.stdout

    def node_state(self) -> str:
        try:
            return self.run("sinfo", "-h", "-N", "-o", "%t", check=False, timeout=10).strip()
        except subprocess.TimeoutExpired:
            return ""

    def start(self) -> LocalSlurm:
        """Install if needed, write the configuration, start the daemons, wait for ``idle``."""
        reason = unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        install()
        self._write_config()
        t0 = time.monotonic()
        try:
            self._link_node_config()
            munged = _which("munged")
            self._spawn(
                "munged",
                [
                    munged, "--foreground", "--force",
                    f"--socket={self.munge_socket}",
                    f"--key-file={self.munge_dir / 'munge.key'}",
                    f"--log-file={self.munge_dir / 'munged.log'}",
                    f"--pid-file={self.munge_dir / 'munged.pid'}",
                    f"--seed-file={self.munge_dir / 'munged.seed'}",
                ],
                user=self._munge_user,
            )  # fmt: skip
            self._wait_for("munged's socket", self.munge_socket.exists, 20)
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
            self._wait_for(
                "slurmctld",
                lambda: self.run("scontrol", "ping", check=False, timeout=10).find("UP") >= 0,
                self.start_timeout,
            )
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
            self._wait_for(
                f"node {self.node} to be idle",
                lambda: self.node_state() == "idle",
                self.start_timeout,
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _link_node_config(self) -> None:
        """Make this cluster's slurm.conf the node's own, for clients that do not see SLURM_CONF.

        snakemake-executor-plugin-slurm-jobstep runs each rule under `srun` with every SLURM_*
        variable but a few job ids removed from its environment, SLURM_CONF included; srun then
        looks for /etc/slurm/slurm.conf, then /run/slurm/conf/slurm.conf (where a configless
        slurmd keeps its copy), then DNS. We take the second place, for as long as we run.
        """
        if Path(DEFAULT_CONF).exists():
            raise SlurmUnavailable(
                f"{DEFAULT_CONF} exists (a SLURM is configured on this machine): jobs' srun would "
                "read it instead of the test cluster's configuration"
            )
        link = Path(NODE_CONF_LINK)
        if link.is_symlink() and _is_stale_test_cluster(link):
            link.unlink()  # left by a test cluster that was killed before it could clean up
        if link.is_symlink() or link.exists():
            raise SlurmUnavailable(
                f"{link} exists (another slurmd, or a test cluster that was not stopped?); "
                "remove it if no SLURM is running here"
            )
        self._made_link_parent = not link.parent.exists()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(self.root, target_is_directory=True)
        self._linked = link

    def _unlink_node_config(self) -> None:
        link = getattr(self, "_linked", None)
        if link is not None and link.is_symlink() and link.resolve() == self.root.resolve():
            link.unlink()
            if getattr(self, "_made_link_parent", False):
                with contextlib.suppress(OSError):
                    link.parent.rmdir()
        self._linked = None

    def stop(self) -> None:
        """Cancel this cluster's jobs and stop the daemons this object started (only those)."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.run("scancel", "--user", str(os.geteuid()), check=False, timeout=10)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for log in self._logs:
            log.close()
        self._logs.clear()
        self._unlink_node_config()

    def cleanup(self) -> None:
        """Stop, then delete the temporary folder if this object made it."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- inspection ------------------------------------------------------------------------

    def logs(self, tail: int = 40) -> str:
        """The last lines of every daemon log, for error messages."""
        parts = []
        for path in [*sorted(self.log_dir.glob("*")), self.munge_dir / "munged.log"]:
            if path.is_file():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller still knows (MinJobAge keeps finished ones), as key=value
        dicts from ``scontrol show job -d -o``."""
        out = self.run("scontrol", "show", "job", "-d", "-o", check=False)
        return [_parse_scontrol(line) for line in out.splitlines() if line.startswith("JobId=")]


_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_:/]*$")


def _is_stale_test_cluster(link: Path) -> bool:
    """A /run/slurm/conf link to a test cluster's folder that is gone or whose slurmctld is dead."""
    conf = link / "slurm.conf"
    if not link.exists() or not conf.is_file():
        return not link.exists()
    if not conf.read_text().startswith(CONF_MARKER):
        return False  # not one of ours
    try:
        pid = int((link / "slurmctld.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return True
    return False


def _parse_scontrol(line: str) -> dict[str, str]:
    """``scontrol -o`` prints ``Key=Value`` pairs separated by spaces; values such as the
    wrapped command may contain spaces, so glue a token to the previous value unless it
    starts with ``Key=``."""
    fields: dict[str, str] = {}
    key = None
    for token in line.split(" "):
        head, sep, value = token.partition("=")
        if sep and _KEY.match(head):
            key = head
            fields[key] = value
        elif key is not None:
            fields[key] += " " + token
    return {k: v.strip() for k, v in fields.items()}
