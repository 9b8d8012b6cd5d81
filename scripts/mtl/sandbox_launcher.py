"""The sandbox's launcher program (mtl.sandbox): `python -I -S -c <this file's text> SCRATCH
ISOLATE FD`.

Run once per evaluating process in the namespaces (as their PID 1) unless the user opted
out. argv: scratch folder, isolate (0/1), control socket fd. It makes every mount read-only
but the scratch folder, says "ready", then serves one request per message on the control
socket: a JSON request and the fds [stdout, stderr, reply socket, cgroup.procs (optional)].
A handler forked per request enters new mount, PID and network namespaces, binds the
program's folder writable over a now read-only scratch folder, and forks the program (PID 1
of its namespace): it joins its process-count cgroup, sets its limits, drops every
capability, closes every other fd and execs Python. A setup failure is written to a
close-on-exec pipe, so it is never mistaken for a failing program. The handler enforces the
wall clock (killing PID 1 kills every process the program started) and replies in JSON.
"""

import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x20000000, 0x40000000
KEEP = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
        "relatime": 1 << 21}


def check(failed, what):
    if failed:
        raise OSError(f"{what}: {os.strerror(ctypes.get_errno())}")


def remount_readonly(chosen):
    for line in open("/proc/self/mountinfo"):  # noqa: SIM115
        fields = line.split()
        point, options = fields[4].encode().decode("unicode_escape"), fields[5].split(",")
        if "ro" in options or not chosen(point):
            continue
        # Flags the parent namespace locked (nosuid, nodev, ...) must be kept on a remount.
        extra = sum(KEEP.get(opt, 0) for opt in options)
        check(libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | extra,
                         None), f"read-only remount of {point}")


def program(request, out, err, procs, status):
    os.setsid()
    if procs is not None:
        os.write(procs, b"0")  # this process; its children inherit the cgroup
    nproc, cpu, memory, size = (request[k] for k in ("nproc", "cpu", "memory", "size"))
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
        check(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")
    os.chdir(request["work"])
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
    # The program must not reach the launcher (which keeps its capabilities) or any other fd.
    os.closerange(3, status)
    os.closerange(status + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.execve(sys.executable, [sys.executable, *request["flags"], "main.py"], request["env"])


def handle(request, fds):
    out, err, reply = fds[:3]
    procs = fds[3] if len(fds) > 3 else None
    answer = {"setup": "", "returncode": None, "timeout": False}
    try:
        work = request["work"]
        if not work.startswith(scratch + "/"):
            raise OSError(f"work folder {work} is outside {scratch}")
        if isolate:
            check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET), "unshare")
            check(libc.mount(work.encode(), work.encode(), None, MS_BIND, None), f"bind {work}")
            remount_readonly(lambda point: point == scratch)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(status_r)
                program(request, out, err, procs, status_w)
            except BaseException as error:
                os.write(status_w, f"{type(error).__name__}: {error}".encode())
            os._exit(125)
        os.close(status_w)
        answer["setup"] = os.read(status_r, 4096).decode(errors="replace")
        watch = os.pidfd_open(pid)
        if not select.select([watch], [], [], request["timeout"])[0]:
            answer["timeout"] = True
            os.killpg(pid, signal.SIGKILL)
        answer["returncode"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except OSError as error:
        answer["setup"] = str(error)
    os.write(reply, json.dumps(answer).encode())


if __name__ == "__main__":
    scratch, isolate, control = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
    try:
        if isolate:
            check(libc.mount(scratch.encode(), scratch.encode(), None, MS_BIND, None),
                  f"bind {scratch}")
            remount_readonly(lambda point: point != scratch)
    except OSError as error:
        sys.stderr.write(f"mtl-sandbox setup: {error}\n")
        sys.exit(125)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    channel = socket.socket(fileno=control)
    channel.send(b"ready")
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 4)
        if not message:
            break  # the evaluating process is gone
        if os.fork() == 0:
            channel.close()
            try:
                handle(json.loads(message), fds)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
