"""Helpers for tests that run the workflow: a fresh copy of the repository, snakemake in it,
the jobs a dry run plans, the content hashes its provenance records carry, and workflow runs
built in the background while other tests run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = ["--configfile", "config/test.yaml"]
RESULT_SOURCES = {"results/paper_reference.csv"}
# Per thread: a background build's environment (see env() and Build).
_THREAD = threading.local()


def _seeds(*configs: str) -> list[int]:
    """The `seeds` of config.yaml with `configs` layered on it (the last that sets it wins)."""
    seeds: list[int] = []
    for name in ("config/config.yaml", *configs):
        seeds = yaml.safe_load((REPO / name).read_text()).get("seeds", seeds)
    return seeds


# The seeds a run of config/test.yaml trains; the first is the one tables read by role.
TEST_SEEDS = _seeds("config/test.yaml")
# The stand-in (one seed): its run builds the three-skill merge kept on disk and table 5.
STANDIN_CONFIG = ["--configfile", "config/standin.yaml"]
STANDIN_SEED = _seeds("config/standin.yaml")[0]
STANDIN_MERGE = (f"results/merged/seed-{STANDIN_SEED}/"
                 "merge-ta-heuristic-science-pertask20+safety-all+coding-all")
STANDIN_TABLES = ["results/table5.csv", "results/table5_vs_paper.csv"]
SHARED_MODELS = ("pretrained", "general")


def seeded(kind: str, name: str, seed: int | None = None) -> str:
    """results/<kind>/seed-<N>/<name> (the test config's first seed by default), or
    results/<kind>/<name> for θ_pre and θ_G, which every seed shares."""
    if name in SHARED_MODELS:
        return f"results/{kind}/{name}"
    return f"results/{kind}/seed-{TEST_SEEDS[0] if seed is None else seed}/{name}"
_SKIP = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__",
                               ".pytest_cache", ".ruff_cache", "*.egg-info")


def copy_repo(dest: Path) -> Path:
    """The files a fresh clone would have (tracked + untracked-but-not-ignored), nothing built:
    not even the tables committed under results/."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, dest, ignore=_SKIP, dirs_exist_ok=True)
        return dest
    for rel in (f.decode() for f in listed if f):
        # The committed tables are outputs, not sources; the paper's published numbers are
        # an input no rule writes (table5_vs_paper reads them).
        if rel.startswith("results/") and rel not in RESULT_SOURCES:
            continue
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def clone_run(src: Path, dest: Path) -> Path:
    """A copy of a built workflow directory, results and Snakemake's metadata included."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def env() -> dict[str, str]:
    # A background build uses the environment of the moment it started, so that a test changing
    # os.environ meanwhile (monkeypatch) cannot reach the build's jobs.
    out = dict(getattr(_THREAD, "environ", os.environ))
    # Jobs must find this same Python (pytest may run from .venv/bin without it on PATH).
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    out.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return out


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 1800,
              extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", *args]
    with subprocess.Popen(command, cwd=workdir, env={**env(), **(extra_env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        # A background build's snakemake, so that the session's end can stop it (see Builds).
        getattr(_THREAD, "processes", []).append(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    done = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return done


_RULE = re.compile(r"^(?:local)?rule (\w+):$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")
NOTHING_TO_DO = "Nothing to be done"


def planned_jobs(workdir: Path, *args: str) -> set[tuple[str, str]]:
    """(rule, 'key=value, ...') of every job a dry run would execute, `all` left out.

    Checked against Snakemake's own summary, so a parser that matched nothing cannot pass for
    "nothing planned": the jobs found must add up to the "Job stats" table, or, when none are
    found, Snakemake must have said there is nothing to be done.
    """
    done = snakemake(workdir, "-n", *args)
    text = done.stdout + done.stderr
    jobs: list[list[str]] = []
    for line in text.splitlines():
        if match := _RULE.match(line.rstrip()):
            jobs.append([match.group(1), ""])
        elif (match := _WILDCARDS.match(line)) and jobs:
            jobs[-1][1] = match.group(1).strip()
    stats: dict[str, int] = {}
    if "Job stats:" in text:
        for line in text.split("Job stats:", 1)[1].splitlines():
            if line.strip().startswith("total"):
                break
            if match := _STATS_ROW.match(line.strip()):
                stats[match.group(1)] = int(match.group(2))
    counted: dict[str, int] = {}
    for rule, _ in jobs:
        counted[rule] = counted.get(rule, 0) + 1
    if not jobs and NOTHING_TO_DO not in text:
        raise AssertionError(f"dry run: no jobs parsed and no {NOTHING_TO_DO!r}:\n{text[-3000:]}")
    if jobs and counted != stats:
        raise AssertionError(f"dry run: parsed jobs {counted} != Job stats {stats}")
    return {(rule, wildcards) for rule, wildcards in jobs if rule != "all"}


def prov_hashes(workdir: Path) -> dict[str, str]:
    """Every artifact under results/ and its content hash, from its .prov.json sidecar."""
    return {
        prov.relative_to(workdir).as_posix()[: -len(".prov.json")]: json.loads(
            prov.read_text())["hash"]
        for prov in sorted((workdir / "results").rglob("*.prov.json"))
    }



def embedded_results(report: Path) -> dict:
    """An HTML report's own index of its results (path → name, caption, mime type, data URI)."""
    page = report.read_text()
    start = page.index("var results = ", page.index('<script id="results">'))
    line = page[start + len("var results = "):page.index("\n", start)]
    return json.loads(line.strip().removesuffix(";"))

# ---- workflow runs built in the background ---------------------------------------------------
#
# A workflow run that tests read (minutes of jobs, or a series of dry runs) starts when
# collection ends, in a thread, and the fixture that returns it waits for it. Other tests run
# meanwhile (conftest orders those that read no build first), so a core the run leaves idle (a
# one-core run, the serial stretches of a DAG, a job waiting on SLURM, a single-process pytest)
# does their work instead of idling until the run is needed.

BuildFunction = Callable[[Path], Any]
_BUILDS: dict[str, BuildFunction] = {}


def registered(fixture_names: set[str]) -> list[str]:
    """Which of these fixtures are background builds."""
    return [name for name in _BUILDS if name in fixture_names]


class Build:
    """One background build: `function(folder)` in a thread; `result()` waits and returns it
    (or raises what it raised)."""

    def __init__(self, name: str, function: BuildFunction, root: Path) -> None:
        self.name = name
        self.processes: list[subprocess.Popen] = []  # its snakemake calls
        self._outcome: tuple[bool, Any] | None = None
        folder = root / name
        folder.mkdir(parents=True)
        self._thread = threading.Thread(target=self._run, args=(function, folder,
                                                                dict(os.environ)),
                                        name=f"build-{name}", daemon=True)
        self._thread.start()

    def _run(self, function: BuildFunction, folder: Path, environ: dict[str, str]) -> None:
        _THREAD.environ = environ
        _THREAD.processes = self.processes
        try:
            self._outcome = (True, function(folder))
        except BaseException as err:  # re-raised in the test that needs the build
            self._outcome = (False, err)

    def result(self) -> Any:
        self._thread.join()
        assert self._outcome is not None
        ok, value = self._outcome
        if not ok:
            raise value
        return value


class Builds:
    """The session's background builds, started on demand or at the end of collection."""

    def __init__(self) -> None:
        self.root: Path | None = None  # made with the first build
        self._started: dict[str, Build] = {}
        self._lock = threading.Lock()

    def start(self, name: str) -> Build:
        with self._lock:
            if self.root is None:
                self.root = Path(tempfile.mkdtemp(prefix="mtl-builds-"))
            if name not in self._started:
                self._started[name] = Build(name, _BUILDS[name], self.root)
            return self._started[name]

    def started(self, name: str) -> bool:
        return name in self._started

    def stop(self) -> None:
        """Stop what is still running (the session ends early: a failure under -x, an
        interrupt): snakemake cancels its jobs on SIGTERM."""
        for build in self._started.values():
            for proc in build.processes:
                if proc.poll() is None:
                    proc.terminate()

    def start_needed(self, fixture_names: set[str]) -> list[str]:
        """Start every registered build a selected test uses; returns their names."""
        needed = registered(fixture_names)
        for name in needed:
            self.start(name)
        return needed


BUILDS = Builds()


def background_build(function: BuildFunction) -> Any:
    """Register `function(folder) -> value` as a background build and return a session fixture
    of the same name whose value is the build's. A build may wait for another through
    `BUILDS.start(name).result()`."""
    _BUILDS[function.__name__] = function

    @pytest.fixture(scope="session", name=function.__name__)
    def fixture() -> Any:
        return BUILDS.start(function.__name__).result()

    fixture.__doc__ = function.__doc__
    return fixture
