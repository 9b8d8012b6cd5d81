"""Replacing outputs. A workflow rerun deletes a job's outputs before the job runs (Snakemake
does, for folders), and an existing output is taken as built. Both are safe only for what this
workflow wrote: an output whose record lists every file in it. Anything else belongs to
someone else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mtl.hashing import SNAKEMAKE_TIMESTAMP
from mtl.provenance import ProvenanceError, is_sidecar, load_record, relative_path, sidecar


class ForeignOutputError(ProvenanceError):
    """An output path holds something this workflow did not write; nothing was deleted."""


def _files_under(folder: Path) -> list[str]:
    return sorted(
        (Path(dirpath) / name).relative_to(folder).as_posix()
        for dirpath, _, names in os.walk(folder)
        for name in names
    )


def record_problem(path: str | os.PathLike) -> str | None:
    """Why the existing `path` is not an output of this workflow (no record of it, a record
    of another path or kind, an unreadable record); None when it is absent or recorded."""
    path = Path(os.path.normpath(path))
    if not os.path.lexists(path):
        return None
    if not sidecar(path).exists():
        return f"{path.as_posix()}: exists, but has no provenance record {sidecar(path).as_posix()}"
    try:
        record = load_record(path)
    except ProvenanceError as err:
        return f"{path.as_posix()}: {err}"
    # Records name their artifact relative to the working directory the step ran in.
    if record["path"] != relative_path(path, Path.cwd().resolve()):
        return f"{path.as_posix()}: its record {sidecar(path).as_posix()} is of {record['path']}"
    kind = "dir" if path.is_dir() else "file"
    if record.get("kind", kind) != kind:
        return f"{path.as_posix()}: a {kind}, but its record describes a {record['kind']}"
    return None


def replace_problem(path: str | os.PathLike) -> str | None:
    """Why the existing output `path` must not be replaced: it is foreign (`record_problem`),
    or it is a folder holding files its record does not list. None when this workflow wrote
    everything in it (or it is absent)."""
    problem = record_problem(path)
    path = Path(os.path.normpath(path))
    if problem or not path.is_dir():
        return problem
    listed = load_record(path).get("manifest", {})
    extra = [rel for rel in _files_under(path) if rel not in listed and rel != SNAKEMAKE_TIMESTAMP]
    if not extra:
        return None
    return f"{path.as_posix()}: holds file(s) its provenance record does not list: " + ", ".join(
        (path / rel).as_posix() for rel in extra
    )


def recorded(outputs: Iterable[Any]) -> list[Any]:
    """The outputs among a job's or rule's `outputs` whose record is declared beside them (the
    records themselves are the workflow's own bookkeeping)."""
    outputs = list(outputs)
    declared = {os.fspath(f) for f in outputs}
    return [f for f in outputs if not is_sidecar(f) and sidecar(f).as_posix() in declared]


def refusal(problems: Sequence[str], action: str) -> ForeignOutputError:
    """One error for every problem found, saying what was not done and how to go on."""
    return ForeignOutputError(
        f"{action}: this workflow did not write everything in these output paths, and deletes"
        " nothing it did not write (nothing was deleted):\n"
        + "".join(f"  {problem}\n" for problem in problems)
        + "Move each named file or folder out of the way (e.g. `mv PATH ~/kept/`), then run"
        " again; a folder left half-written by a killed run can be removed."
    )


def check_replaceable(paths: Iterable[str | os.PathLike], action: str) -> None:
    """Raise `ForeignOutputError` naming every path in `paths` that must not be replaced."""
    problems = [p for p in dict.fromkeys(map(replace_problem, paths)) if p]
    if problems:
        raise refusal(problems, action)


def foreign_outputs(
    roots: Iterable[str | os.PathLike], patterns: Sequence[re.Pattern[str]]
) -> list[str]:
    """Every existing path under `roots` that matches an output pattern of the workflow but
    is not recorded as its output (`record_problem`). A matched folder is one artifact: its
    contents are not visited, so this reads no model file."""
    problems = []
    for root in sorted(set(map(os.fspath, roots))):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames:
                rel = Path(dirpath, name).as_posix()
                if not is_sidecar(rel) and any(p.match(rel) for p in patterns):
                    problems.append(record_problem(rel))
            for name in list(dirnames):
                rel = Path(dirpath, name).as_posix()
                if any(p.match(rel) for p in patterns):
                    dirnames.remove(name)
                    problems.append(record_problem(rel))
            dirnames.sort()
    return sorted(p for p in problems if p)
