"""mtl.merge.direct: outputs written past the page cache get exactly the bytes written, on
filesystems that take O_DIRECT and on those that refuse it."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import numpy as np
import pytest

from mtl.merge import direct
from mtl.merge.direct import ALIGN, DirectFile
from mtl.merge.options import EngineOptions

# Writes of every kind of size: tiny, unaligned, exactly a block, larger than the buffer.
SIZES = [8, 1, ALIGN - 1, ALIGN, 3 * ALIGN + 5, 0, 10 * ALIGN, 17, 2 * ALIGN]


def _chunks(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(n) for n in SIZES]


def _write(path: Path, chunks: list[bytes], direct_io: bool) -> DirectFile:
    with open(path, "wb") as handle:
        sink = DirectFile(handle.fileno(), direct_io)
        for chunk in chunks:
            assert sink.write(chunk) == len(chunk)
        sink.close()
        sink.close()  # a second close changes nothing
    return sink


def _supports_direct(folder: Path) -> bool:
    with open(folder / "probe", "wb") as handle:
        sink = DirectFile(handle.fileno())
        sink.close()
        return sink.direct


@pytest.fixture
def small_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "BUFFER_BYTES", 4 * ALIGN)  # several drains per file


@pytest.mark.usefixtures("small_buffer")
@pytest.mark.parametrize("direct_io", [True, False])
def test_the_file_holds_exactly_the_bytes_written(tmp_path: Path, direct_io: bool) -> None:
    chunks = _chunks(1)
    sink = _write(tmp_path / "out", chunks, direct_io)
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)
    if not direct_io:
        assert not sink.direct


@pytest.mark.usefixtures("small_buffer")
def test_direct_writes_are_aligned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write made with O_DIRECT starts at an aligned offset, from an aligned address,
    with an aligned length; the last one is padded, and the file cut back to its length.
    (O_DIRECT is pretended, so this holds on filesystems that refuse it, tmpfs included.)"""
    monkeypatch.setattr(direct, "_set_direct", lambda fd, on: True)
    writes: list[tuple[int, int, int]] = []
    real_write = os.write

    def recording(fd: int, data: memoryview) -> int:
        address = np.frombuffer(data, dtype=np.uint8).ctypes.data
        writes.append((os.lseek(fd, 0, os.SEEK_CUR), address, len(data)))
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "write", recording)
    chunks = _chunks(2)
    sink = _write(tmp_path / "out", chunks, direct_io=True)
    assert sink.direct and len(writes) > 3
    assert all(offset % ALIGN == at % ALIGN == n % ALIGN == 0 for offset, at, n in writes)
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)


@pytest.mark.usefixtures("small_buffer")
@pytest.mark.parametrize("refusal", [errno.EINVAL, errno.EOPNOTSUPP])
def test_a_write_refused_goes_on_without_o_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    """A filesystem that takes the flag but refuses the write: the file goes on with ordinary
    writes and still gets every byte once."""
    monkeypatch.setattr(direct, "_set_direct", lambda fd, on: True)
    real_write = os.write
    refused: list[int] = []

    def refusing_once(fd: int, data: memoryview) -> int:
        if not refused:
            refused.append(len(data))
            raise OSError(refusal, os.strerror(refusal))
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "write", refusing_once)
    chunks = _chunks(3)
    sink = _write(tmp_path / "out", chunks, direct_io=True)
    assert refused and not sink.direct
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)


@pytest.mark.usefixtures("small_buffer")
def test_filesystems_without_o_direct_get_ordinary_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that refuses the flag (EINVAL when it is set, as tmpfs did before Linux
    6.6): the file is written with ordinary writes all the same."""
    real_fcntl = direct.fcntl.fcntl

    def refusing(fd: int, command: int, arg: int = 0) -> int:
        if command == direct.fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, command, arg)

    monkeypatch.setattr(direct.fcntl, "fcntl", refusing)
    chunks = _chunks(4)
    sink = _write(tmp_path / "out", chunks, direct_io=True)
    assert not sink.direct
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)


def test_o_direct_is_used_where_the_filesystem_takes_it(tmp_path: Path) -> None:
    if not _supports_direct(tmp_path):
        pytest.skip(f"{tmp_path}'s filesystem refuses O_DIRECT")
    chunks = _chunks(5)
    assert _write(tmp_path / "out", chunks, direct_io=True).direct
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)


def test_the_environment_turns_direct_io_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTL_DIRECT_IO", "0")
    assert not EngineOptions().direct_io
    monkeypatch.setenv("MTL_DIRECT_IO", "1")
    assert EngineOptions().direct_io
    monkeypatch.delenv("MTL_DIRECT_IO")
    assert EngineOptions().direct_io
