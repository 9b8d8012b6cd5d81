"""The mutation check itself: malformed entries are named, a mutation the tests miss survives,
one they notice is caught, and the shipped mutation files all apply to this repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mutate import MUTATIONS, REPO, Mutation, MutationFileError, judge, load

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


def test_caught_and_surviving_mutations_and_the_file_is_restored(repo):
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


def test_the_shipped_mutations_apply_to_this_repository():
    mutations = load(MUTATIONS, REPO)
    assert {Path(m.file).name for m in mutations} >= {"audit.py", "tables.py", "evaluation.py"}
