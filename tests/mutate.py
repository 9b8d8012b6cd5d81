"""Mutation check: deliberate bugs that the fast tests must catch.

    python tests/mutate.py [--only NAME ...] [--jobs N]

Every tests/mutations/*.yaml is a list of mutations, each
    {name, file, find, replace, tests: [pytest arguments]}
where `find` must occur exactly once in `file`. In a scratch copy of the repository (the files a
fresh clone has) each mutation in turn replaces `find` by `replace` and runs
    python -m pytest -x -q -m "not slow" <tests>
which must FAIL: a mutation the tests pass on has survived. Each test selection is first run on
the unmutated copy and must pass, so a failure is the mutation's doing; with `--passed
REPORT` (pytest's `--junitxml` of a run of this tree, as CI makes), a selection whose every
test passed in that run counts as passing without running it again.

`--jobs N` (default: one per CPU) judges N mutations at once, each in its own scratch copy: a
pytest run is one process on one core, so N cores judge N mutations in the time of one. Each
run is a fresh process forked from a server that imported the third-party libraries once
(torch, transformers, pandas: most of a small selection's time is their import); the copy's
own modules, tests and conftest are imported anew in every run, so each sees its mutation.

Prints a table (mutation, result, seconds, the test that caught it); exits 1 when a mutation
survived or could not be judged (a selection that fails unmutated, a mutation that breaks
collection or runs past the time limit), naming each; 2 for a malformed mutation file.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workflow import REPO, copy_repo, env  # noqa: E402

MUTATIONS = HERE / "mutations"
TIMEOUT = 600
PYTEST_ARGS = ("-x", "-q", "-m", "not slow", "-p", "no:cacheprovider")
# Imported once by the fork server (see the module's docstring); none of them is ours.
PRELOAD = ["torch", "transformers", "safetensors.torch", "numpy", "pandas", "yaml", "pytest"]
FIELDS = ("name", "file", "find", "replace", "tests")
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


class MutationFileError(Exception):
    """A mutation entry that cannot be applied as written."""


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    source: str  # mutations file it came from, for messages


@dataclass
class Outcome:
    mutation: Mutation
    result: str  # caught | SURVIVED | BROKEN | TIMEOUT
    seconds: float
    caught_by: str = ""
    output: str = ""


def load(folder: Path, repo: Path) -> list[Mutation]:
    """Every mutation of every *.yaml in `folder`, each checked against `repo`'s files."""
    mutations: list[Mutation] = []
    seen: dict[str, str] = {}
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise MutationFileError(f"{folder}: no *.yaml mutation files")
    for path in files:
        entries = yaml.safe_load(path.read_text())
        if not isinstance(entries, list) or not entries:
            raise MutationFileError(f"{path.name}: expected a non-empty list of mutations")
        for index, entry in enumerate(entries, start=1):
            where = f"{path.name} entry {index}"
            if not isinstance(entry, dict):
                raise MutationFileError(f"{where}: expected a mapping with {', '.join(FIELDS)}")
            where = f"{path.name} entry {index} ({entry.get('name', 'unnamed')})"
            missing = [key for key in FIELDS if key not in entry]
            extra = sorted(set(entry) - set(FIELDS))
            if missing or extra:
                raise MutationFileError(f"{where}: missing {missing}, unknown {extra}")
            if not all(isinstance(entry[key], str) for key in FIELDS[:4]):
                raise MutationFileError(f"{where}: name, file, find and replace must be strings")
            tests = entry["tests"]
            if not isinstance(tests, list) or not tests or not all(
                isinstance(arg, str) for arg in tests
            ):
                raise MutationFileError(f"{where}: tests must be a non-empty list of strings")
            if entry["name"] in seen:
                raise MutationFileError(f"{where}: name also used in {seen[entry['name']]}")
            seen[entry["name"]] = where
            target = repo / entry["file"]
            if not target.is_file():
                raise MutationFileError(f"{where}: no file {entry['file']}")
            count = target.read_text().count(entry["find"])
            if count != 1:
                raise MutationFileError(
                    f"{where}: `find` occurs {count} times in {entry['file']}, must be once")
            if entry["find"] == entry["replace"]:
                raise MutationFileError(f"{where}: replace is the same as find")
            mutations.append(Mutation(entry["name"], entry["file"], entry["find"],
                                      entry["replace"], tuple(tests), path.name))
    return mutations


def _variables(workdir: Path) -> dict[str, str]:
    # Programs the tests start (`python -m mtl.audit`, step scripts) import the mutated copy's
    # library too, not an installed one.
    variables = env()
    variables["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(workdir / "scripts"), variables.get("PYTHONPATH")]))
    return variables


# The fork server of main(); None: each run starts its own Python (run_tests' default).
_SERVER: multiprocessing.context.ForkServerContext | None = None


def start_fork_server(preload: list[str]) -> None:
    """Runs from now on fork from a server that has imported `preload` (env() set first, as
    the conftest would, for libraries that read it at import)."""
    global _SERVER
    os.environ.update(env())
    _SERVER = multiprocessing.get_context("forkserver")
    _SERVER.set_forkserver_preload(preload)


def _pytest_in(workdir: Path, tests: tuple[str, ...], log: Path) -> NoReturn:
    """A forked run: pytest on `tests` in `workdir`, output to `log`, its exit code written to
    `log`.code (so that a process that died before pytest ran is not read as failing tests).
    Our modules the server or the caller imported (mutate, workflow, mtl, conftest, test files)
    are dropped so that the copy's, mutated, are imported."""
    code = 3
    try:
        os.setsid()  # its own process group, so a timeout stops what the tests started too
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(workdir)
        variables = _variables(workdir)
        os.environ.clear()
        os.environ.update(variables)
        ours = tuple(str(p) for p in (REPO / "tests", REPO / "scripts", workdir))
        sys.path[:] = [p for p in sys.path if not p.startswith(ours)]
        for name, module in list(sys.modules.items()):
            if name != "__main__" and (getattr(module, "__file__", None) or "").startswith(ours):
                del sys.modules[name]
        import pytest

        # Plugins the preloaded libraries imported (anyio's) cannot be assertion-rewritten;
        # pytest says so, about them only: ours are imported anew.
        quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
        code = int(pytest.main([*PYTEST_ARGS, *quiet, *tests]))
        Path(f"{log}.code").write_text(str(code))
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _forked(workdir: Path, tests: tuple[str, ...]) -> tuple[int | None, str]:
    assert _SERVER is not None
    with tempfile.TemporaryDirectory(prefix="mtl-mutate-run-") as tmp:
        log = Path(tmp) / "output"
        process = _SERVER.Process(target=_pytest_in, args=(workdir, tests, log))
        process.start()
        process.join(TIMEOUT)
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.join()
            code = None
        else:
            result = Path(f"{log}.code")
            code = int(result.read_text()) if result.exists() else -1
        output = log.read_text(errors="replace") if log.exists() else ""
        if code == -1:
            output += f"\nmutate: the forked run ended (exit {process.exitcode}) before pytest did"
    return code, output


def run_tests(workdir: Path, tests: tuple[str, ...]) -> tuple[int | None, str, float]:
    """(pytest's exit code or None on timeout, its output, seconds) in `workdir`."""
    started = time.monotonic()
    if _SERVER is not None:
        code, output = _forked(workdir, tests)
        return code, output, time.monotonic() - started
    cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests]
    try:
        done = subprocess.run(cmd, cwd=workdir, env=_variables(workdir), capture_output=True,
                              text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else err.stdout
        return None, output or "", time.monotonic() - started
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def passed_tests(report: Path) -> set[str]:
    """The node ids (path::name) that passed in a pytest --junitxml report."""
    passed = set()
    for case in ElementTree.parse(report).iter("testcase"):
        if any(child.tag in ("failure", "error", "skipped") for child in case):
            continue
        # pytest writes a node id's path as a dotted module (and a class after it).
        passed.add(f"{case.get('classname', '')}::{case.get('name', '')}")
    return passed


def junit_id(node: str) -> str:
    """A node id as a junit report spells it: tests/test_a.py::Class::test_b[x] ->
    tests.test_a.Class::test_b[x]."""
    path, *inner, name = node.split("::")
    return f"{'.'.join([path.removesuffix('.py').replace('/', '.'), *inner])}::{name}"


def baseline(workdir: Path, tests: tuple[str, ...],
             passed: set[str]) -> tuple[int | None, str, float]:
    """The selection run unmutated, unless each of its tests is in `passed` (collected only)."""
    if passed:
        code, output, seconds = run_tests(workdir, ("--collect-only", *tests))
        nodes = {line.strip() for line in output.splitlines() if "::" in line}
        if code == 0 and nodes and {junit_id(node) for node in nodes} <= passed:
            return 0, f"all {len(nodes)} tests passed in the pytest run", seconds
    return run_tests(workdir, tests)


def judge(workdir: Path, mutation: Mutation) -> Outcome:
    target = workdir / mutation.file
    original = target.read_text()
    target.write_text(original.replace(mutation.find, mutation.replace, 1))
    try:
        code, output, seconds = run_tests(workdir, mutation.tests)
    finally:
        target.write_text(original)
    # Exit code 1: tests ran and some failed. Anything else is not a caught mutation: 0 passed,
    # 2-5 an interrupted or empty run (a mutation that breaks collection proves nothing).
    if code == 1:
        failed = _FAILED.search(output)
        return Outcome(mutation, "caught", seconds, failed.group(1) if failed else "?", output)
    result = {0: "SURVIVED", None: "TIMEOUT"}.get(code, "BROKEN")
    return Outcome(mutation, result, seconds, output=output)


T = TypeVar("T")
R = TypeVar("R")


def in_copies(copies: list[Path], work: Callable[[Path, T], R], items: Iterable[T],
              done: Callable[[R], None]) -> list[R]:
    """`work(copy, item)` for every item, as many at once as there are copies, each call holding
    one copy (a mutation changes a file of its copy) until it returns; `done` sees each result
    as it comes. Results in the order of `items`."""
    free: queue.Queue[Path] = queue.Queue()
    for copy in copies:
        free.put(copy)

    def one(item: T) -> R:
        copy = free.get()
        try:
            result = work(copy, item)
        finally:
            free.put(copy)
        done(result)
        return result

    with ThreadPoolExecutor(max_workers=len(copies)) as pool:
        return list(pool.map(one, items))


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "result", "seconds", "caught by")]
    rows += [(o.mutation.name, o.result, f"{o.seconds:.1f}", o.caught_by) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + f"  {row[3]}"
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="mutations judged at once (default: one per CPU)")
    parser.add_argument("--passed", type=Path, metavar="REPORT",
                        help="pytest --junitxml report of this tree: a selection whose every "
                             "test passed there needs no baseline run")
    parser.add_argument("--folder", type=Path, default=MUTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        mutations = load(args.folder, REPO)
    except (MutationFileError, yaml.YAMLError) as err:
        print(f"mutate: {err}", file=sys.stderr)
        return 2
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in mutations})
        if unknown:
            print(f"mutate: no mutation named {unknown}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.name in args.only]

    if args.jobs < 1:
        print(f"mutate: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return 2

    passed = passed_tests(args.passed) if args.passed else set()
    started = time.monotonic()
    start_fork_server(PRELOAD)
    with tempfile.TemporaryDirectory(prefix="mtl-mutate-") as tmp:
        jobs = min(args.jobs, len(mutations))
        copies = [copy_repo(Path(tmp) / f"repo-{n}") for n in range(jobs)]
        selections = list(dict.fromkeys(m.tests for m in mutations))

        def baseline_done(result: tuple[tuple[str, ...], int | None, str, float]) -> None:
            tests, code, output, seconds = result
            if code == 0:
                how = output if output.startswith("all ") else "passes"
                print(f"baseline {how} ({seconds:.1f}s): {' '.join(tests)}", flush=True)

        baselines = in_copies(copies,
                              lambda copy, tests: (tests, *baseline(copy, tests, passed)),
                              selections, baseline_done)
        failing = [(tests, code, output) for tests, code, output, _ in baselines if code != 0]
        for tests, code, output in failing:
            print(output[-3000:])
            print(f"mutate: the unmutated copy fails `pytest {' '.join(tests)}` (exit {code}),"
                  f" so no mutation of it can be judged", file=sys.stderr)
        if failing:
            return 1

        def judged(outcome: Outcome) -> None:
            print(f"{outcome.result:8} {outcome.seconds:6.1f}s  {outcome.mutation.name}",
                  flush=True)

        outcomes = in_copies(copies, judge, mutations, judged)

    print(f"\n{table(outcomes)}\n")
    bad = [o for o in outcomes if o.result != "caught"]
    for outcome in bad:
        where = f"{outcome.mutation.source}: {outcome.mutation.name} ({outcome.mutation.file})"
        print(f"mutate: {outcome.result}: {where}", file=sys.stderr)
        if outcome.result == "BROKEN":
            print(outcome.output[-2000:], file=sys.stderr)
    minutes = (time.monotonic() - started) / 60
    print(f"{len(outcomes) - len(bad)} of {len(outcomes)} mutations caught in {minutes:.1f} min"
          f" ({jobs} at once)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
