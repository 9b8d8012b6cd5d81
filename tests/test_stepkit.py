"""Step programs refuse to run with a library from another checkout (rules/common.smk)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import mtl
from mtl.stepkit import check_library

SCRIPTS = Path(mtl.__file__).resolve().parents[1]


def test_the_library_beside_the_step_program_passes():
    check_library(SimpleNamespace(rule="world", scriptdir=str(SCRIPTS)))


def test_a_library_from_elsewhere_is_named_with_both_paths(tmp_path):
    with pytest.raises(RuntimeError) as err:
        check_library(SimpleNamespace(rule="world", scriptdir=str(tmp_path)))
    message = str(err.value)
    assert "rule world" in message and str(tmp_path) in message and str(SCRIPTS) in message
