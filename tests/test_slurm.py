"""The workflow through a real SLURM: `snakemake --profile slurm` on a one-node cluster.

Starts munge + slurmctld + slurmd on localhost with one fake GPU (tests/slurm_cluster.py),
runs config/test.yaml to results/table5.csv with the repository's slurm/ profile in a fresh
copy of the repository, and checks against the scheduler's own records that:
- every job of the DAG went through sbatch (and nothing ran outside SLURM),
- rules that declare a GPU were scheduled with a GPU gres, and no other rule was,
- every artifact has the same content hash (its .prov.json "hash") as a local
  `snakemake --cores 2` run of the same config.

Needs root on Debian (it apt-installs slurmctld, slurmd, slurm-client, munge if missing). It
skips, saying why, anywhere else; under CI=true as root on Debian it fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from slurm_cluster import LocalSlurm, SlurmUnavailable, unavailable_reason

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
TARGET = "results/table5.csv"
CONFIG = "config/test.yaml"
# The test config asks for no GPU (toy scale); this layer makes one GPU-declaring family ask for
# one, so that a rule is scheduled with a GPU gres. It changes resources only, never results.
GPU_FAMILY, GPU_RULES = "pretrain", {"pretrain"}
GPU_LAYER = f"resources:\n  {GPU_FAMILY}: {{gpu: 1, cpus_per_gpu: 1}}\n"
# Polling pace for the test cluster only (its MinJobAge is an hour, so squeue stays reliable);
# the profile's 70 s suits real clusters but would make each of the ~20 jobs wait a minute.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]
RUN_TIMEOUT = 40 * 60


def _must_not_skip() -> bool:
    """CI on a Debian machine as root has everything needed: a skip there would hide a failure."""
    return (
        os.environ.get("CI", "").lower() == "true"
        and os.geteuid() == 0
        and Path("/etc/debian_version").exists()
    )


def _skip(reason: str):
    if _must_not_skip():
        pytest.fail(f"CI=true as root on Debian, so the SLURM test must run, but: {reason}")
    pytest.skip(f"local SLURM test not run: {reason}")


def copy_repo(dest: Path) -> Path:
    """The files a fresh clone would have (tracked + untracked-but-not-ignored), nothing built."""
    dest.mkdir(parents=True)
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.split(b"\0")  # fmt: skip
        files = [f.decode() for f in listed if f]
    except (OSError, subprocess.CalledProcessError):
        ignore = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__",
                                        ".pytest_cache", ".ruff_cache", "*.egg-info")  # fmt: skip
        shutil.copytree(REPO, dest, ignore=ignore, dirs_exist_ok=True)
        return dest
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base or os.environ)
    # pytest may run from .venv/bin without the venv on PATH; jobs must find the same Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    # Both runs in this same Python environment, even on a machine that has conda.
    env["MTL_SDM"] = "none"
    return env


def _snakemake(workdir: Path, args: list[str], env: dict[str, str], log: Path):
    """Start snakemake in workdir; its output goes to log."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _job_logs(workdir: Path, n: int = 3) -> str:
    """The ends of the last few SLURM job logs (kept for failed jobs), for failure messages."""
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"), key=os.path.getmtime)
    return "".join(
        f"\n--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:])
        for p in logs[-n:]
    )


def _finish(
    proc: subprocess.Popen, log: Path, what: str, workdir: Path, timeout: float = RUN_TIMEOUT
) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=60)
        tail = log.read_text(errors="replace")[-6000:]
        pytest.fail(f"{what} did not finish in {timeout / 60:.0f} min\n{tail}{_job_logs(workdir)}")
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{text[-6000:]}{_job_logs(workdir)}")
    return text


def prov_hashes(workdir: Path) -> dict[str, str]:
    """Every artifact under results/ and its content hash, from its .prov.json sidecar."""
    hashes = {}
    for prov in sorted((workdir / "results").rglob("*.prov.json")):
        rel = prov.relative_to(workdir).as_posix()[: -len(".prov.json")]
        hashes[rel] = json.loads(prov.read_text())["hash"]
    return hashes


class LocalRun:
    """`snakemake --cores 2` of the test config in its own copy, started at once, awaited later
    (the SLURM run spends most of its time waiting on the scheduler, so they overlap well)."""

    def __init__(self, root: Path):
        self.workdir = copy_repo(root / "local")
        self.log = root / "local.log"
        self.started = time.monotonic()
        self.proc = _snakemake(
            self.workdir, ["--cores", "2", "--configfile", CONFIG, "--", TARGET], _env(), self.log
        )
        self._text: str | None = None

    def result(self) -> str:
        if self._text is None:
            self._text = _finish(self.proc, self.log, "the local run", self.workdir)
            self.seconds = time.monotonic() - self.started
        return self._text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def workspace():
    """Both copies of the repository and the logs; MTL_KEEP_SLURM_TEST=1 keeps them."""
    root = Path(tempfile.mkdtemp(prefix="mtl-slurm-test-"))
    yield root
    if os.environ.get("MTL_KEEP_SLURM_TEST") == "1":
        print(f"\nkept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = unavailable_reason()
    if reason:
        _skip(reason)
    cluster = LocalSlurm()
    try:
        cluster.start()
    except SlurmUnavailable as err:
        cluster.cleanup()
        _skip(str(err))
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="module")
def local_run(workspace):
    """The reference: the same config run locally. (Other workflow tests could share this one
    run if it moved to tests/conftest.py as a session fixture.)"""
    run = LocalRun(workspace)
    yield run
    run.stop()


def test_workflow_through_slurm(slurm_cluster, local_run, workspace):
    t0 = time.monotonic()
    workdir = copy_repo(workspace / "slurm")
    gpu_layer = workspace / "gpu.yaml"
    gpu_layer.write_text(GPU_LAYER)
    log = workspace / "slurm.log"
    args = ["--profile", "slurm", "--configfile", CONFIG, str(gpu_layer), *FAST_STATUS,
            "--slurm-keep-successful-logs", "--", TARGET]  # fmt: skip
    proc = _snakemake(workdir, args, _env(slurm_cluster.env), log)
    text = _finish(proc, log, "the SLURM run", workdir)
    slurm_seconds = time.monotonic() - t0

    # -- every job went through sbatch -----------------------------------------------------------
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", text))
    done = re.findall(r"^(\d+) of (\d+) steps \(100%\) done", text, re.M)
    assert done, f"the SLURM run did not report completion:\n{text[-4000:]}"
    n_jobs = int(done[-1][1])
    assert "localrule" not in text, "a job ran on the submit host instead of through SLURM"
    assert len(submitted) == n_jobs, f"{n_jobs} jobs in the DAG, {len(submitted)} submitted"

    # ... and the scheduler agrees: it ran exactly those jobs, for this run, successfully.
    records = {job["JobId"]: job for job in slurm_cluster.jobs()}
    run_ids = set(submitted.values())
    assert run_ids <= set(records), f"jobs unknown to slurmctld: {run_ids - set(records)}"
    ours = [records[i] for i in sorted(run_ids, key=int)]
    for job in ours:
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["JobName"].startswith("mtl_"), job["JobName"]  # the profile's job name prefix
        assert job["NodeList"] == slurm_cluster.node, job
        assert Path(job["StdOut"]).is_file(), f"no SLURM log for job {job['JobId']}"
    rule_of = {job["JobId"]: _rule(job["Comment"]) for job in ours}

    # The same jobs as the local run, rule by rule.
    local_text = local_run.result()
    local_rules = Counter(re.findall(r"^localrule (\w+):", local_text, re.M))
    assert Counter(rule_of.values()) == local_rules

    # -- GPU rules got a GPU gres, the others none --------------------------------------------
    for job in ours:
        gres = f"{job.get('TresPerJob', '')} {job.get('JOB_GRES', '')} {job.get('TRES', '')}"
        has_gpu = "gpu" in gres
        if rule_of[job["JobId"]] in GPU_RULES:
            assert has_gpu and ("gres/gpu=1" in gres or "gpu:1" in gres), job
        else:
            assert not has_gpu, f"{rule_of[job['JobId']]} asked for no GPU but got {gres}"
    assert set(rule_of.values()) >= GPU_RULES, "no GPU-declaring rule ran"

    # -- same content as the local run ---------------------------------------------------------
    local, remote = prov_hashes(local_run.workdir), prov_hashes(workdir)
    assert local, "the local run wrote no provenance records"
    assert set(remote) == set(local)
    differ = sorted(k for k in local if local[k] != remote[k])
    assert not differ, (
        f"{len(differ)} of {len(local)} artifacts differ between the local and the SLURM run "
        f"(MTL_KEEP_SLURM_TEST=1 keeps both copies to compare): {differ}"
    )

    print(
        f"\nSLURM test: {n_jobs} jobs, cluster up in {slurm_cluster.startup_seconds:.1f} s, "
        f"SLURM run {slurm_seconds:.0f} s, local run {local_run.seconds:.0f} s (overlapping)"
    )


def _rule(comment: str) -> str:
    """The plugin's job comment: rule_<rule>[_wildcards_<...>]."""
    match = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", comment)
    assert match, f"unexpected job comment {comment!r}"
    return match.group(1)
