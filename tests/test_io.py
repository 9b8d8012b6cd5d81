"""Atomic writes: all or nothing, and with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mtl.io import atomic_dir, atomic_file, read_jsonl, write_json


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_get_the_umask_mode_not_owner_only(tmp_path, umask_027):
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "w.bin").write_bytes(b"1")
    assert _mode(tmp_path / "a.json") == 0o640
    assert _mode(tmp_path / "model") == 0o750


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_failed_folder_block_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("x")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new").write_text("y")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_bad_jsonl_rows_are_named_by_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"messages": []}\n\n{"text": 1}\n')
    with pytest.raises(ValueError, match=rf"{path}:3: row is missing field\(s\) messages"):
        read_jsonl(path, required=("messages",))
    path.write_text('{"messages": []}\n[1]\n')
    with pytest.raises(ValueError, match=rf"{path}:2: expected a JSON object, got list"):
        read_jsonl(path)
