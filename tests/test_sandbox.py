"""The code-execution sandbox: each escape attempt is contained and reported."""

import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mtl import sandbox
from mtl.sandbox import Limits, SandboxUnavailable, run_python
from mtl.scoring import program_passes
from mtl.world import WorldSpec, build_world


@pytest.fixture
def listener():
    """A socket listening on 127.0.0.1 that reports whether anyone connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)

    def reached() -> bool:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            return False
        conn.close()
        return True

    yield server.getsockname()[1], reached
    server.close()


def connect_program(port: int) -> str:
    return f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2).close()\n"


def test_a_local_listening_socket_is_unreachable(listener):
    port, reached = listener
    # Run unconfined, the same program connects: the listener can tell.
    subprocess.run([sys.executable, "-c", connect_program(port)], check=True, timeout=10)
    assert reached()
    result = run_python(connect_program(port))
    assert result.status == "error" and "Network is unreachable" in result.reason
    assert not reached()


def test_a_fork_bomb_is_capped_and_leaves_nothing_behind():
    marker = f"{random.randint(10**6, 10**7)}.{random.randint(1, 999)}"
    # Children that outlive their parent would escape a plain subprocess timeout.
    program = (
        "import os\n"
        "for _ in range(3):\n"
        f"    if os.fork() == 0: os.execv('/bin/sleep', ['sleep', '{marker}'])\n"
        "while True: os.fork()\n"
    )
    result = run_python(program, Limits(timeout_s=20, max_procs=16))
    assert result.status == "error" and "BlockingIOError" in result.reason
    time.sleep(0.2)
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)]
    assert survivors == []


def _cmdline_has(proc: Path, marker: str) -> bool:
    try:
        return marker in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_writes_outside_the_work_folder_fail_and_inside_succeed(tmp_path):
    target = tmp_path / "escaped.txt"
    program = (
        "open('inside.txt', 'w').write('ok')\n"
        "print(open('inside.txt').read())\n"
        f"open({str(target)!r}, 'w').write('escaped')\n"
    )
    result = run_python(program)
    assert result.stdout.strip() == "ok"
    assert result.status == "error" and "Read-only file system" in result.reason
    assert not target.exists()


def test_a_program_reaches_no_other_run_and_no_fd_of_the_launcher():
    # Only stdin, stdout and stderr are open (the launcher's control socket would let a
    # program start others under its own terms); its run folder's siblings are read-only.
    program = ("import os\n"
               "print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))\n"
               "open('../../escaped.txt', 'w')\n")
    result = run_python(program)
    assert result.stdout.split("\n")[0] in ("[0, 1, 2]", "[0, 1, 2, 3]")  # 3: the listing
    assert result.status == "error" and "Read-only file system" in result.reason


def test_programs_run_side_by_side_each_in_its_own_namespaces():
    program = "import os, time\ntime.sleep(0.3)\nprint(os.getpid(), os.listdir('.'))\n"
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: run_python(program + f"open('{i}', 'w')"), range(6)))
    assert [r.status for r in results] == ["ok"] * 6
    # Each program is PID 1 of its own namespace and sees only its own fresh folder.
    assert {r.stdout.strip() for r in results} == {"1 ['main.py']"}


def test_a_lost_launcher_is_started_again():
    assert run_python("print(1)").ok
    launcher = sandbox._launcher(sandbox._isolation())
    os.killpg(launcher.process.pid, signal.SIGKILL)
    launcher.process.wait()
    assert run_python("print(2)").stdout.strip() == "2"
    assert sandbox._launcher(sandbox._isolation()) is not launcher


def test_too_much_memory_is_a_memory_error():
    result = run_python("block = bytearray(2 * 1024**3)\nprint('allocated')",
                        Limits(memory_mb=256))
    assert result.status == "error" and result.reason == "MemoryError"
    assert "allocated" not in result.stdout


def test_a_program_that_runs_forever_is_stopped():
    started = time.monotonic()
    busy = run_python("while True: pass", Limits(timeout_s=1.5))
    idle = run_python("import time\ntime.sleep(1000)", Limits(timeout_s=1.5))
    assert busy.status in ("timeout", "killed") and idle.status == "timeout"
    assert time.monotonic() - started < 15


def test_files_and_output_are_capped_in_size():
    big = run_python("open('big', 'wb').write(b'x' * 8 * 2**20)", Limits(file_size_mb=1))
    assert big.status == "error" and "File too large" in big.reason
    chatty = run_python("print('y' * 10**6)", Limits(output_chars=100))
    assert len(chatty.stdout) == 100


def test_the_environment_is_scrubbed_and_the_folder_fresh(monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("MTL_TEST_SECRET", secret)
    first = run_python("import os\nprint(sorted(os.environ), os.listdir('.'))\n"
                       "open('left.txt', 'w').write('x')")
    second = run_python("import os\nprint(os.listdir('.'))")
    assert secret not in first.stdout and "MTL_TEST_SECRET" not in first.stdout
    assert first.stdout.startswith("['HOME', 'LANG', 'MKL_NUM_THREADS', 'OMP_NUM_THREADS', "
                                   "'OPENBLAS_NUM_THREADS', 'PATH', 'TMPDIR']")
    assert "left.txt" not in second.stdout


def test_without_isolation_it_fails_closed_unless_the_user_opts_out(monkeypatch):
    sandbox._isolation.cache_clear()
    monkeypatch.setattr(sandbox, "_PROBE_PROGRAMS", (["false"],))
    try:
        with pytest.raises(SandboxUnavailable, match="MTL_SANDBOX=none"):
            run_python("print(1)")
        monkeypatch.setenv("MTL_SANDBOX", "none")
        sandbox._isolation.cache_clear()
        assert run_python("print(1)").stdout.strip() == "1"
        monkeypatch.setenv("MTL_SANDBOX", "off")
        sandbox._isolation.cache_clear()
        with pytest.raises(SandboxUnavailable, match="expected 'auto' or 'none'"):
            run_python("print(1)")
    finally:
        sandbox._isolation.cache_clear()


@pytest.mark.skipif(os.geteuid() != 0, reason="only a real root is exempt from RLIMIT_NPROC")
def test_root_without_a_pids_cgroup_fails_closed(monkeypatch):
    sandbox._isolation.cache_clear()
    monkeypatch.setattr(sandbox, "_pids_cgroup", lambda: None)
    try:
        with pytest.raises(SandboxUnavailable, match="no writable pids cgroup"):
            run_python("print(1)")
    finally:
        sandbox._isolation.cache_clear()


def _scored_before(prediction: str, expected: str) -> float:
    """The toy coding scorer before the sandbox: kept here as the reference it must match."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (2, 2))
        resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))

    prelude = "import sys\nsys.modules['socket'] = None\nsys.modules['_socket'] = None\n"
    source = " ".join(prediction.replace("</s>", " ").split())
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", prelude + source],
                              capture_output=True, text=True, timeout=5.0, preexec_fn=limit,
                              env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 0.0
    return float(done.returncode == 0 and done.stdout.strip() == expected.strip())


def test_the_toy_coding_scorer_scores_as_before():
    world = build_world(WorldSpec(seed=7, entities=12, corpus_sentences=10, general_examples=40,
                                  skill_ratio={"science": 0.2, "safety": 0.2, "coding": 0.5},
                                  eval_examples=12))
    rows = world["eval_coding"]
    outputs = []
    for i, row in enumerate(rows):
        program, other = row["answer"], rows[(i + 1) % len(rows)]["answer"]
        outputs += [
            (program + " </s>", row["expected_output"]),  # right
            (other, row["expected_output"]),  # another row's program: usually wrong
            (program.replace("+", "-").replace("*", "+"), row["expected_output"]),
            (program[: len(program) // 2], row["expected_output"]),  # syntax error
        ]
    before = [_scored_before(p, e) for p, e in outputs]
    after = [program_passes(p, e) for p, e in outputs]
    assert after == before
    assert 0 < sum(after) < len(after)


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0 or not Path(SYSTEM_PYTHON).is_file(),
                    reason="needs root to become an unprivileged user, and a system Python")
def test_an_unprivileged_user_gets_the_same_containment(tmp_path):
    """The cluster case: no root, a user namespace; RLIMIT_NPROC then caps the fork bomb."""
    scripts = Path(sandbox.__file__).resolve().parent.parent
    probe = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(scripts)!r})\n"
        "from mtl import sandbox\n"
        "limits = sandbox.Limits(timeout_s=10, max_procs=16)\n"
        "programs = {'ok': 'print(6 * 7)',\n"
        "            'net': \"import socket; socket.create_connection(('127.0.0.1', 22), 1)\",\n"
        "            'fork': 'import os\\nwhile True: os.fork()',\n"
        "            'write': \"open('/tmp/mtl-sandbox-escape', 'w').write('x')\"}\n"
        "results = {k: sandbox.run_python(p, limits) for k, p in programs.items()}\n"
        "out = {k: [r.status, r.reason] for k, r in results.items()}\n"
        "print(json.dumps({'isolation': sandbox._isolation().prefix, 'runs': out}))\n"
    )
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd="/")
    if "SandboxUnavailable" in done.stderr:
        pytest.skip(f"no unprivileged user namespaces here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "--user" in report["isolation"]
    runs = report["runs"]
    assert runs["ok"] == ["ok", "ok"]
    assert runs["net"][0] == "error" and "Network is unreachable" in runs["net"][1]
    assert runs["fork"][0] == "error" and "BlockingIOError" in runs["fork"][1]
    assert runs["write"][0] == "error" and "Read-only file system" in runs["write"][1]
    assert not Path("/tmp/mtl-sandbox-escape").exists()
