"""docs/testing.md maps each README promise to tests: every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"`(test_\w+\.py)?(?:::)?(test_\w+)?`")


def named_tests(text: str) -> list[tuple[str, str | None]]:
    """(file, test or None) of each `test_x.py`, `test_x.py::test_y` or `test_y` in `text`; a
    bare test name belongs to the file named last before it on its line."""
    named = []
    for line in text.splitlines():
        current = None
        for match in _NAME.finditer(line):
            file, test = match.groups()
            current = file or current
            if current and (file or test):
                named.append((current, test))
    return named


def test_every_test_the_testing_guide_names_exists() -> None:
    text = (REPO / "docs/testing.md").read_text()
    section = text.split("## The README's promises", 1)[1].split("\n## Training rows", 1)[0]
    named = named_tests(section)
    assert len(named) > 20
    missing = []
    for file, test in named:
        path = REPO / "tests" / file
        if not path.is_file():
            missing.append(file)
        elif test and not re.search(rf"^def {test}\(", path.read_text(), re.MULTILINE):
            missing.append(f"{file}::{test}")
    assert not missing, f"docs/testing.md names tests that do not exist: {missing}"
