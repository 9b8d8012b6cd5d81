"""Atomic writes: a killed job never leaves a file or folder that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask



@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; give the result the mode open() would have (0666 minus the
        # umask), or artifacts on a shared cluster filesystem end up readable by their owner only.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # as for atomic_file: mkdtemp makes 0700 folders
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as sorted, indented JSON, atomically (stable bytes for stable hashes)."""
    with atomic_file(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def write_csv(frame: Any, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame as CSV without its index, atomically. (Typed Any: this module
    stays importable where pandas is not installed, as in the data and merge envs.)"""
    with atomic_file(path) as handle:
        frame.to_csv(handle, index=False)


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")


def read_json_object(path: str | os.PathLike, error: Callable[[str], Exception]) -> dict:
    """The JSON object in `path`. A missing, unreadable or non-object file raises
    `error(reason)`, reason one of "missing", "unreadable (…)", "not a JSON object": each
    caller names the file its own way."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise error("missing") from None
    except (OSError, ValueError) as err:
        raise error(f"unreadable ({err})") from None
    if not isinstance(data, dict):
        raise error("not a JSON object")
    return data


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[dict]:
    """Read JSONL; a malformed line or a row missing a required field names file and line."""
    rows = []
    with open(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                kind = type(row).__name__
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {kind}")
            missing = [key for key in required if key not in row]
            if missing:
                raise ValueError(f"{path}:{lineno}: row is missing field(s) {', '.join(missing)}")
            rows.append(row)
    return rows
