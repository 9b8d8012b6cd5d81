"""Shared test setup: import `mtl` from scripts/ and keep Hugging Face libraries offline; the
test config's workflow runs that many tests read, each built once per session in the
background (tests/workflow.py), with the fast tests ordered first so they run meanwhile."""

import os
import shutil
import sys
import time
from pathlib import Path

# Set before any test module imports huggingface_hub, which reads these once at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SRC = Path(__file__).resolve().parent.parent / "scripts"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


import pytest  # noqa: E402
from workflow import (  # noqa: E402
    BUILDS,
    STANDIN_CONFIG,
    STANDIN_MERGE,
    STANDIN_TABLES,
    TEST_CONFIG,
    background_build,
    clone_run,
    copy_repo,
    registered,
    snakemake,
)


@background_build
def toy_run(folder: Path) -> Path:
    """The test config's DAG to results/table5.csv, built once in a fresh copy."""
    workdir = copy_repo(folder / "repo")
    snakemake(workdir, "results/table5.csv", "--cores", "2", *TEST_CONFIG)
    if BUILDS.started("full_run"):
        # full_run's copy is taken before any test can run snakemake in this one.
        clone_run(workdir, folder / "for-full-run")
    return workdir


@background_build
def standin_run(folder: Path) -> tuple[Path, str]:
    """The stand-in to its kept merge and table 5, built once in a fresh copy (its tests read it;
    the SLURM test compares its own run's artifacts with it); the copy and snakemake's output."""
    workdir = copy_repo(folder / "repo")
    start = time.monotonic()
    done = snakemake(workdir, "--cores", "2", "--keep-going", *STANDIN_CONFIG, "--",
                     STANDIN_MERGE, *STANDIN_TABLES, check=False)
    print(f"stand-in build: {time.monotonic() - start:.0f} s")  # shown with -s / -rP
    return workdir, done.stdout + done.stderr


@background_build
def full_run(folder: Path) -> Path:
    """The test config's default target (every table, figure, all_results and claims), built
    once on a copy of `toy_run`: the jobs past table 5 only."""
    toy = BUILDS.start("toy_run").result()
    run = toy.parent / "for-full-run"
    if not run.exists():  # full_run was asked for after toy_run was handed to tests
        run = clone_run(toy, folder / "run")
    snakemake(run, "--cores", "2", *TEST_CONFIG)
    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first (in their usual order, those that read a background build last), so
    the builds run while they do; then the SLURM tests, whose runs mostly wait on the scheduler
    while the builds go on; then the other slow tests."""

    def phase(item: pytest.Item) -> tuple[int, bool]:
        reads_build = bool(registered(set(getattr(item, "fixturenames", ()))))
        if item.get_closest_marker("slow") is None:
            return 0, reads_build
        return (1 if item.get_closest_marker("slurm") else 2), False

    items.sort(key=phase)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    started = BUILDS.start_needed(used)
    if started and session.config.get_verbosity() >= 0:
        print(f"\nbuilding in the background: {', '.join(started)} (in {BUILDS.root})")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Builds still running are stopped; they are kept for inspection when a test failed,
    removed otherwise."""
    BUILDS.stop()
    if BUILDS.root and exitstatus == 0 and os.environ.get("MTL_KEEP_BUILDS") != "1":
        shutil.rmtree(BUILDS.root, ignore_errors=True)
