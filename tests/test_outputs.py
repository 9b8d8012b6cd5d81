"""What a run may replace or take as built: only outputs whose record lists all they hold.

The library checks (mtl.replacing: record_problem, replace_problem, foreign_outputs) here; the
same cases through Snakemake itself (rerun, --forcerun, an upstream change, a folder made by
hand) in tests/test_workflow_outputs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl.provenance import Step, sidecar
from mtl.replacing import (
    ForeignOutputError,
    check_replaceable,
    foreign_outputs,
    record_problem,
    recorded,
    replace_problem,
)

MODEL = "results/models/m"
TABLE = "results/table.csv"
# What Snakemake's rules would match (rules/outputs.smk gives it the rules' own regexes).
PATTERNS = [re.compile(r"results/models/[a-z]+$"), re.compile(r"results/table\.csv$")]


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder and a file written by a step, each with its record."""
    monkeypatch.chdir(tmp_path)
    outputs = {"out": [MODEL, TABLE], "prov": [sidecar(p).as_posix() for p in (MODEL, TABLE)]}
    with Step("build", {}, outputs, {}, {}):
        Path(MODEL, "sub").mkdir(parents=True)
        Path(MODEL, "weights.bin").write_bytes(b"w")
        Path(MODEL, "sub", "config.json").write_text("{}")
        Path(TABLE).write_text("a,b\n")
    return tmp_path


def test_what_the_workflow_wrote_may_be_replaced(built: Path) -> None:
    assert replace_problem(MODEL) is None and replace_problem(TABLE) is None
    # Snakemake's own timestamp marker is not the user's.
    Path(MODEL, ".snakemake_timestamp").touch()
    assert replace_problem(MODEL) is None
    assert replace_problem("results/models/absent") is None
    check_replaceable([MODEL, TABLE], "no job was started")


def test_a_file_the_record_does_not_list_stops_naming_it(built: Path) -> None:
    Path(MODEL, "notes.txt").write_text("mine")
    Path(MODEL, "sub", "more.txt").write_text("mine too")
    problem = replace_problem(MODEL)
    assert problem is not None
    assert f"{MODEL}/notes.txt" in problem and f"{MODEL}/sub/more.txt" in problem
    assert "weights.bin" not in problem
    with pytest.raises(ForeignOutputError) as caught:
        check_replaceable([TABLE, MODEL], "no job was started")
    message = str(caught.value)
    assert "no job was started" in message and f"{MODEL}/notes.txt" in message
    assert "nothing was deleted" in message and "mv " in message
    assert Path(MODEL, "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (lambda: sidecar(MODEL).unlink(), "has no provenance record"),
        (lambda: sidecar(MODEL).write_text("{truncated"), "provenance record"),
        (
            lambda: sidecar(MODEL).write_text(sidecar(TABLE).read_text()),
            f"is of {TABLE}",
        ),
    ],
    ids=["no-record", "unreadable-record", "record-of-another-path"],
)
def test_a_path_without_its_own_record_is_foreign(built: Path, spoil, said: str) -> None:
    spoil()
    assert said in (record_problem(MODEL) or "")
    assert said in (replace_problem(MODEL) or "")
    assert foreign_outputs(["results"], PATTERNS) == [record_problem(MODEL)]


def test_a_record_of_a_file_does_not_vouch_for_a_folder(built: Path) -> None:
    Path(TABLE).unlink()
    Path(TABLE).mkdir()
    assert "a dir, but its record describes a file" in (record_problem(TABLE) or "")


def test_the_scan_finds_hand_made_outputs_and_nothing_else(built: Path) -> None:
    assert foreign_outputs(["results"], PATTERNS) == []
    Path("results/models/byhand").mkdir()
    Path("results/models/byhand/notes.txt").write_text("mine")
    Path("results/notes.txt").write_text("not an output path")  # matches no pattern
    found = foreign_outputs(["results"], PATTERNS)
    assert len(found) == 1 and found[0].startswith("results/models/byhand: exists")
    # A recorded folder with extra files is not foreign: it is refused only when replaced.
    Path(MODEL, "notes.txt").write_text("mine")
    assert len(foreign_outputs(["results"], PATTERNS)) == 1


def test_only_outputs_declared_with_their_record_are_checked() -> None:
    declared = [MODEL, f"{MODEL}.prov.json", "results/logs/m.log", TABLE]
    assert recorded(declared) == [MODEL]
