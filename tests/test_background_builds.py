"""The background builds of tests/workflow.py: a build runs once however many tests ask for it,
returns its value or raises its error in each test that needs it, and runs with the environment
of the moment it started (a test changing os.environ meanwhile cannot reach its jobs)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import workflow
from workflow import Builds


@pytest.fixture
def builds(monkeypatch) -> Iterator[Builds]:
    monkeypatch.setattr(workflow, "_BUILDS", {})
    made = Builds()
    yield made
    if made.root:
        shutil.rmtree(made.root)


def test_a_build_runs_once_and_every_caller_gets_its_value(builds):
    calls: list[Path] = []

    def counted(folder: Path) -> str:
        calls.append(folder)
        return "built"

    workflow._BUILDS["counted"] = counted
    assert builds.start_needed({"counted", "tmp_path"}) == ["counted"]
    assert builds.start("counted").result() == "built"
    assert builds.start("counted").result() == "built"
    assert len(calls) == 1 and calls[0].is_dir() and calls[0].parent == builds.root


def test_a_failed_build_raises_in_each_test_that_needs_it(builds):
    def broken(folder: Path) -> None:
        raise AssertionError("snakemake failed")

    workflow._BUILDS["broken"] = broken
    build = builds.start("broken")
    for _ in range(2):
        with pytest.raises(AssertionError, match="snakemake failed"):
            build.result()


def test_only_builds_a_selected_test_uses_start(builds):
    workflow._BUILDS["unused"] = lambda folder: pytest.fail("started though no test uses it")
    assert builds.start_needed({"toy", "tmp_path"}) == []
    assert builds.root is None


def test_a_build_keeps_the_environment_it_started_with(builds, monkeypatch):
    monkeypatch.setenv("MTL_PROBE", "at start")
    go = threading.Event()

    def reads_env(folder: Path) -> str:
        go.wait(timeout=60)
        return workflow.env()["MTL_PROBE"]

    workflow._BUILDS["reads_env"] = reads_env
    build = builds.start("reads_env")
    monkeypatch.setenv("MTL_PROBE", "changed by a test")
    go.set()
    assert build.result() == "at start"
    assert workflow.env()["MTL_PROBE"] == "changed by a test" == os.environ["MTL_PROBE"]


def test_a_build_still_running_at_the_end_is_stopped(builds, tmp_path):
    """A session that ends before a build is needed (-x, an interrupt) leaves no workflow
    running: its snakemake process is terminated."""
    (tmp_path / "Snakefile").write_text(
        'rule wait:\n    output: "done"\n    shell: "sleep 600 && touch {output}"\n')

    def slow(folder: Path):
        return workflow.snakemake(tmp_path, "--cores", "1", check=False)

    workflow._BUILDS["slow"] = slow
    build = builds.start("slow")
    deadline = time.monotonic() + 120
    while not build.processes and time.monotonic() < deadline:
        time.sleep(0.1)
    assert build.processes, "the build never started snakemake"
    builds.stop()
    done = build.result()
    assert done.returncode != 0 and not (tmp_path / "done").exists()
