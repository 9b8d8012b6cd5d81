"""Mutation check: deliberate bugs that the fast tests must catch.

    python tests/mutate.py [--only NAME ...]

Every tests/mutations/*.yaml is a list of mutations, each
    {name, file, find, replace, tests: [pytest arguments]}
where `find` must occur exactly once in `file`. In a scratch copy of the repository (the files a
fresh clone has) each mutation in turn replaces `find` by `replace` and runs
    python -m pytest -x -q -m "not slow" <tests>
which must FAIL: a mutation the tests pass on has survived. Each test selection is first run on
the unmutated copy and must pass, so a failure is the mutation's doing.

Prints a table (mutation, result, seconds, the test that caught it); exits 1 when a mutation
survived or could not be judged (a selection that fails unmutated, a mutation that breaks
collection or runs past the time limit), naming each; 2 for a malformed mutation file.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workflow import REPO, copy_repo, env  # noqa: E402

MUTATIONS = HERE / "mutations"
TIMEOUT = 600
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


def run_tests(workdir: Path, tests: tuple[str, ...]) -> tuple[int | None, str, float]:
    """(pytest's exit code or None on timeout, its output, seconds) in `workdir`."""
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p",
           "no:cacheprovider", *tests]
    # Programs the tests start (`python -m mtl.audit`, step scripts) import the mutated copy's
    # library too, not an installed one.
    variables = env()
    variables["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(workdir / "scripts"), variables.get("PYTHONPATH")]))
    try:
        done = subprocess.run(cmd, cwd=workdir, env=variables, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else err.stdout
        return None, output or "", time.monotonic() - started
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


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

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mtl-mutate-") as tmp:
        workdir = copy_repo(Path(tmp) / "repo")
        for tests in dict.fromkeys(m.tests for m in mutations):
            code, output, seconds = run_tests(workdir, tests)
            if code != 0:
                print(output[-3000:])
                print(f"mutate: the unmutated copy fails `pytest {' '.join(tests)}` (exit {code}),"
                      f" so no mutation of it can be judged", file=sys.stderr)
                return 1
            print(f"baseline passes in {seconds:.1f}s: {' '.join(tests)}", flush=True)
        outcomes = []
        for mutation in mutations:
            outcome = judge(workdir, mutation)
            print(f"{outcome.result:8} {outcome.seconds:6.1f}s  {mutation.name}", flush=True)
            outcomes.append(outcome)

    print(f"\n{table(outcomes)}\n")
    bad = [o for o in outcomes if o.result != "caught"]
    for outcome in bad:
        where = f"{outcome.mutation.source}: {outcome.mutation.name} ({outcome.mutation.file})"
        print(f"mutate: {outcome.result}: {where}", file=sys.stderr)
        if outcome.result == "BROKEN":
            print(outcome.output[-2000:], file=sys.stderr)
    minutes = (time.monotonic() - started) / 60
    print(f"{len(outcomes) - len(bad)} of {len(outcomes)} mutations caught in {minutes:.1f} min")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
