"""The mutation check itself: malformed entries are named, a mutation the tests miss survives,
one they notice is caught, and the shipped mutation files all apply to this repository."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path

import mutate
import pytest
import yaml
from mutate import MUTATIONS, REPO, Mutation, MutationFileError, in_copies, judge, load, main

ENTRY = {"name": "flip", "file": "lib.py", "find": "return a + b", "replace": "return a - b",
         "tests": ["test_lib.py"]}


def _mutations(folder: Path, *entries: dict) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "m.yaml").write_text(yaml.safe_dump(list(entries)))
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "lib.py").write_text("def add(a, b):\n    return a + b\n\n\ndef unused():\n"
                                     "    return 1\n")
    (tmp_path / "test_lib.py").write_text("from lib import add\n\n\ndef test_add():\n"
                                          "    assert add(2, 3) == 5\n")
    return tmp_path


@pytest.mark.parametrize(("change", "message"), [
    ({"find": "return"}, r"m.yaml entry 1 \(flip\): `find` occurs 2 times in lib.py"),
    ({"find": "return a * b"}, r"entry 1 \(flip\): `find` occurs 0 times"),
    ({"file": "nope.py"}, r"entry 1 \(flip\): no file nope.py"),
    ({"tests": []}, r"entry 1 \(flip\): tests must be a non-empty list"),
    ({"tests": None, "extra": 1}, r"unknown \['extra'\]"),
])
def test_malformed_entries_are_named(repo, tmp_path, change, message):
    entry = {key: value for key, value in {**ENTRY, **change}.items() if value is not None}
    folder = _mutations(tmp_path / "mutations", entry)
    with pytest.raises(MutationFileError, match=message):
        load(folder, repo)


def test_a_name_used_twice_is_refused(repo, tmp_path):
    folder = _mutations(tmp_path / "mutations", ENTRY, {**ENTRY, "find": "return 1",
                                                        "replace": "return 2"})
    with pytest.raises(MutationFileError, match=r"entry 2 \(flip\): name also used in"):
        load(folder, repo)


@pytest.fixture(params=["subprocess", "forked"])
def runs(request, monkeypatch):
    """Each pytest run a Python of its own, or forked from a server (what main() uses)."""
    if request.param == "forked":
        server = multiprocessing.get_context("forkserver")
        server.set_forkserver_preload(["yaml"])
        monkeypatch.setattr(mutate, "_SERVER", server)
    return request.param


def test_caught_and_surviving_mutations_and_the_file_is_restored(repo, runs):
    original = (repo / "lib.py").read_text()
    caught = judge(repo, Mutation("flip", "lib.py", "return a + b", "return a - b",
                                  ("test_lib.py",), "m.yaml"))
    assert caught.result == "caught" and caught.caught_by == "test_lib.py::test_add"
    survived = judge(repo, Mutation("dead", "lib.py", "return 1", "return 2", ("test_lib.py",),
                                    "m.yaml"))
    assert survived.result == "SURVIVED"
    broken = judge(repo, Mutation("syntax", "lib.py", "return 1", "return (", ("test_lib.py",),
                                  "m.yaml"))
    assert broken.result == "BROKEN"
    assert (repo / "lib.py").read_text() == original


def test_a_run_past_the_time_limit_is_stopped(repo, runs, monkeypatch):
    monkeypatch.setattr(mutate, "TIMEOUT", 3)
    (repo / "test_slow.py").write_text("import time\n\n\ndef test_sleeps():\n"
                                       "    time.sleep(1000)\n")
    started = time.monotonic()
    code, _, _ = mutate.run_tests(repo, ("test_slow.py",))
    # Stopped at the limit (plus a loaded machine's start-up), not when the test ends.
    assert code is None and time.monotonic() - started < 500


def test_the_shipped_mutations_apply_to_this_repository():
    mutations = load(MUTATIONS, REPO)
    assert {Path(m.file).name for m in mutations} >= {"audit.py", "tables.py", "evaluation.py"}


def test_mutations_are_judged_in_parallel_each_in_a_copy_of_its_own(repo, tmp_path):
    """Two copies: two judgements at once (they meet at a barrier), never two in one copy, and
    the outcomes come back in the mutations' order with every file restored."""
    copies = [repo, tmp_path / "second"]
    copies[1].mkdir()
    for name in ("lib.py", "test_lib.py"):
        (copies[1] / name).write_text((repo / name).read_text())
    meet = threading.Barrier(2, timeout=60)
    in_use: list[Path] = []
    lock = threading.Lock()

    def work(copy: Path, mutation: Mutation):
        with lock:
            assert copy not in in_use
            in_use.append(copy)
        if mutation.name in ("flip", "dead"):
            meet.wait()
        try:
            return judge(copy, mutation)
        finally:
            with lock:
                in_use.remove(copy)

    mutations = [Mutation("flip", "lib.py", "return a + b", "return a - b", ("test_lib.py",),
                          "m.yaml"),
                 Mutation("dead", "lib.py", "return 1", "return 2", ("test_lib.py",), "m.yaml"),
                 Mutation("flip-again", "lib.py", "return a + b", "return a * b",
                          ("test_lib.py",), "m.yaml")]
    seen = []
    outcomes = in_copies(copies, work, mutations, lambda outcome: seen.append(outcome))
    assert [o.result for o in outcomes] == ["caught", "SURVIVED", "caught"]
    assert sorted(o.mutation.name for o in seen) == sorted(m.name for m in mutations)
    for copy in copies:
        assert (copy / "lib.py").read_text() == (repo / "lib.py").read_text()


def test_jobs_below_one_is_refused(capsys):
    assert main(["--jobs", "0", "--only", load(MUTATIONS, REPO)[0].name]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_a_selection_that_passed_in_the_pytest_run_needs_no_baseline(repo, tmp_path):
    report = tmp_path / "report.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={report}", "test_lib.py"], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = mutate.passed_tests(report)
    assert passed == {mutate.junit_id("test_lib.py::test_add")}
    code, output, _ = mutate.baseline(repo, ("test_lib.py",), passed)
    assert (code, output) == (0, "all 1 tests passed in the pytest run")
    # A test the report does not hold as passed is run: here it fails, as the copy now does.
    (repo / "lib.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "test_lib.py").write_text((repo / "test_lib.py").read_text()
                                      + "\n\ndef test_more():\n    assert add(1, 1) == 2\n")
    code, output, _ = mutate.baseline(repo, ("test_lib.py",), passed)
    assert code == 1 and "failed" in output


def test_junit_ids_match_pytests_report():
    assert mutate.junit_id("tests/test_a.py::test_b[x-1]") == "tests.test_a::test_b[x-1]"
    assert mutate.junit_id("tests/test_a.py::TestC::test_d") == "tests.test_a.TestC::test_d"
