"""A real, throwaway SLURM cluster on this machine for tests: compute nodes without network.

    with LocalSlurm() as cluster:          # installs (apt-get) if missing, starts, waits for idle
        subprocess.run(["sbatch", ...], env=cluster.env)   # cluster.env points at its slurm.conf
                                           # stops exactly the daemons it started

The machine plays the login node: munged and slurmctld run here, with this machine's network,
and so do the clients (sbatch, squeue, scontrol, and Snakemake's SLURM plugin, which shells out to
them). Each compute node (``node1``, ``node2``, ...) is one slurmd in a network namespace of its
own whose only links are loopback and one virtual cable to a private bridge that holds the
controller's address (``CONTROLLER_ADDR``): the IP forwarding of this machine stays off and the
namespaces have no default route, so a job reaches the controller and its own node, and nothing
else — the internet of a compute node on a cluster that has none. ``isolated=False`` runs one
slurmd in this machine's own network instead.

Every node has ``gpus_per_node`` fake GPUs of type ``GPU_TYPE`` (gres.conf ``File=`` character
devices made here with /dev/null's numbers, so slurmd accepts them) and the feature
``GPU_TYPE``: jobs that ask for ``--gpus=<type>:N`` or ``-C <type>`` are placed, limited and
accounted as GPU jobs and see ``CUDA_VISIBLE_DEVICES`` and ``SLURM_GPUS_ON_NODE``, but get no
device to compute on.

Everything lives in one temporary folder: slurm.conf, gres.conf, the device files, state, spool,
logs, pid files, a private munge key and socket (a file socket: the namespaces share the file
system). The daemons listen on free ports picked at start. Clients find this cluster through
``SLURM_CONF`` in ``cluster.env``; ``srun`` inside jobs, whose environment the jobstep plugin
strips of SLURM_CONF, finds it through a /run/slurm/conf link (the place a configless node keeps
its configuration), made at start and removed at stop. So the machine must have no
/etc/slurm/slurm.conf of its own.

Needs root (daemons, apt-get, network namespaces) on Debian; ``unavailable_reason()`` says why
not, for skips. Written for Debian 12's packages (SLURM 22.05, munge 0.5.15); docs/testing.md
("The SLURM test") says what it simulates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

APT_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge", "iproute2"]
BINARIES = [
    "slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "sinfo", "ip", "nsenter",
]
# The scheduler must keep finished jobs visible to `squeue`/`scontrol show job` long enough for
# Snakemake's squeue-based status checks (plugin: MinJobAge >= 3 x init-seconds) and for the
# test's own audit of every job after the run.
MIN_JOB_AGE = 3600
CONF_MARKER = "# Written by tests/slurm_cluster.py for a throwaway one-node test cluster."
DEFAULT_CONF = "/etc/slurm/slurm.conf"
NODE_CONF_LINK = "/run/slurm/conf"
# A name no real cluster here has: jobs carry it (SLURM_CLUSTER_NAME).
CLUSTER = "mtltest"
# The fake GPUs' type (--gpus=<type>:N) and the nodes' feature (-C <type>).
GPU_TYPE = "testgpu"
# The private link between the controller and the node namespaces: a /24 that exists only on the
# bridge made at start (start() checks that the kernel routes it there before any daemon starts).
SUBNET = "10.213.7"
CONTROLLER_ADDR = f"{SUBNET}.1"


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
    """SLURM with ``nodes`` compute nodes (``node1``...; partition ``debug``), each in its own
    network namespace (unless ``isolated=False``) with ``gpus_per_node`` fake GPUs."""

    partition = "debug"

    def __init__(
        self,
        root: str | Path | None = None,
        nodes: int = 2,
        gpus_per_node: int = 2,
        isolated: bool = True,
        start_timeout: float = 90,
    ):
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="mtl-slurm-"))
        if nodes < 1 or gpus_per_node < 0 or (nodes > 1 and not isolated):
            raise ValueError("one node or more; several only in namespaces (one slurmd each)")
        self.nodes = [f"node{i}" for i in range(1, nodes + 1)]
        self.gpus_per_node = gpus_per_node
        self.isolated = isolated
        self.start_timeout = start_timeout
        self.cpus = _cpus()
        # The nodes share this machine's memory; slurmd drains a node that claims too much.
        self.mem_mb = max(1000, (_mem_mb() - 1024) // nodes)
        self.conf = self.root / "slurm.conf"
        self.log_dir = self.root / "log"
        self.munge_dir = self.root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self._procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        # Names of the namespaces and links are unique to this cluster's folder, so a leftover
        # of a killed run cannot collide with this one (and cleanup removes only these).
        tag = f"{os.getpid() % 0x10000:04x}"
        self.bridge = f"mtlbr{tag}"
        self.namespaces = {n: f"mtl-{tag}-{n}" for n in self.nodes} if isolated else {}
        self._links: list[str] = []
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if key != "SLURM_CONF":  # never inherit a surrounding job's or site's settings
                del self.env[key]

    def node_addr(self, node: str) -> str:
        if not self.isolated:
            return "127.0.0.1"
        return f"{SUBNET}.{10 + self.nodes.index(node)}"

    # ---- configuration ---------------------------------------------------------------------

    def _write_config(self) -> None:
        self.root.chmod(0o711)  # munged runs as user munge and must reach its own folder
        for sub in ("state", "log", "dev", *(f"spool/{n}" for n in self.nodes)):
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
        # Character devices with /dev/null's numbers: slurmd keeps a GPU only if its File= is a
        # device (without one the node reports fewer GPUs than configured and drains).
        null = os.stat("/dev/null").st_rdev
        devices = [self.root / "dev" / f"gpu{i}" for i in range(self.gpus_per_node)]
        for dev in devices:
            if not dev.exists():
                os.mknod(dev, 0o666 | stat.S_IFCHR, null)
        ctld_port, slurmd_port = _free_ports(2)
        r = self.root
        gres = f" Gres=gpu:{GPU_TYPE}:{self.gpus_per_node}" if self.gpus_per_node else ""
        node_lines = "\n".join(
            f"NodeName={n} NodeAddr={self.node_addr(n)} CPUs={self.cpus} "
            f"RealMemory={self.mem_mb} Feature={GPU_TYPE}{gres} State=UNKNOWN"
            for n in self.nodes
        )
        controller = f"localhost({CONTROLLER_ADDR})" if self.isolated else "localhost"
        self.conf.write_text(
            f"""{CONF_MARKER}
ClusterName={CLUSTER}
SlurmctldHost={controller}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
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
{node_lines}
PartitionName={self.partition} Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
"""
        )
        files = f"{r}/dev/gpu[0-{self.gpus_per_node - 1}]"
        gres_conf = (
            "".join(f"NodeName={n} Name=gpu Type={GPU_TYPE} File={files}\n" for n in self.nodes)
            if self.gpus_per_node
            else ""
        )
        (r / "gres.conf").write_text(gres_conf)

    # ---- network ---------------------------------------------------------------------------

    def _ip(self, *args: str, netns: str | None = None) -> str:
        cmd = ["ip", *(["-n", netns] if netns else []), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")
        return proc.stdout

    def _make_network(self) -> None:
        """The bridge with the controller's address, and one namespace per node cabled to it."""
        if not self.isolated:
            return
        taken = self._ip("-o", "-4", "addr", "show")
        if f" {SUBNET}." in taken:
            raise SlurmUnavailable(
                f"{SUBNET}.0/24 is in use here (a test cluster killed before it could clean up? "
                "then `ip link delete mtlbr<tag>` and `ip netns delete mtl-<tag>-node<i>`):\n"
                + taken
            )
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        self._ip("addr", "add", f"{CONTROLLER_ADDR}/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        for i, node in enumerate(self.nodes):
            ns, host_end = self.namespaces[node], f"{self.bridge}v{i}"
            self._ip("netns", "add", ns)
            self._links.append(f"netns:{ns}")
            self._ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._links.append(host_end)
            self._ip("link", "set", host_end, "master", self.bridge, "up")
            self._ip("link", "set", "lo", "up", netns=ns)
            self._ip("addr", "add", f"{self.node_addr(node)}/24", "dev", "eth0", netns=ns)
            self._ip("link", "set", "eth0", "up", netns=ns)
        # Traffic to the node addresses must stay on the bridge, never go out of this machine.
        for node in self.nodes:
            route = self._ip("route", "get", self.node_addr(node))
            if f"dev {self.bridge}" not in route:
                raise SlurmUnavailable(f"{self.node_addr(node)} is not routed to the bridge: "
                                       + route)

    def _remove_network(self) -> None:
        for link in reversed(self._links):
            kind, _, name = link.rpartition(":")
            cmd = ["ip", "netns", "delete", name] if kind else ["ip", "link", "delete", link]
            subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        self._links.clear()

    def in_node(self, node: str, cmd: list[str]) -> list[str]:
        """`cmd` as it runs on `node` (inside its network namespace)."""
        if not self.isolated:
            return cmd
        # nsenter changes the network only; `ip netns exec` would also mount a fresh /sys,
        # without the cgroup file system that slurmd needs.
        return [_which("nsenter"), f"--net=/run/netns/{self.namespaces[node]}", *cmd]

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

    def node_state(self) -> list[str]:
        """Each node's state (sinfo's short form: idle, mix, alloc, drain, ...)."""
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return []
        states = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
        return [states.get(node, "") for node in self.nodes]

    def start(self) -> LocalSlurm:
        """Install if needed, write the configuration, start the daemons, wait for ``idle``."""
        reason = unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        install()
        self._write_config()
        t0 = time.monotonic()
        try:
            self._make_network()
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
            for node in self.nodes:
                slurmd = [_which("slurmd"), "-D", "-N", node, "-f", str(self.conf)]
                self._spawn(f"slurmd-{node}", self.in_node(node, slurmd))
            self._wait_for(
                f"nodes {','.join(self.nodes)} to be idle",
                lambda: self.node_state() == ["idle"] * len(self.nodes),
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
        for name in (*(f"slurmd-{n}" for n in self.nodes), "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._kill_job_leftovers()
        for log in self._logs:
            log.close()
        self._logs.clear()
        self._unlink_node_config()
        self._remove_network()

    def _kill_job_leftovers(self) -> None:
        """Kill what this cluster's jobs left running. proctrack/linuxproc follows a job's
        processes by parentage, so one whose parent died first (Snakemake in a cancelled job,
        waiting on its own children) outlives the job. A job's processes carry its
        SLURM_JOB_ID and this cluster's SLURM_CONF or name (the jobstep plugin strips the first
        from the rule's processes), which nothing else here has together."""
        ours = {f"SLURM_CONF={self.conf}".encode(), f"SLURM_CLUSTER_NAME={CLUSTER}".encode()}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if ours & set(environ) and any(v.startswith(b"SLURM_JOB_ID=") for v in environ):
                with contextlib.suppress(OSError):
                    os.kill(int(proc.name), signal.SIGKILL)

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
