"""Large outputs written past the page cache (O_DIRECT), where the filesystem allows it.

A grid writes every byte of a model once per ω: 6 GB for the benchmark's 11 points, 150 GB at
7B. Written the usual way, each byte is first copied into the kernel's page cache, and that
copy, with allocating and accounting the pages, is the largest CPU cost of a pass: 7-8 CPU-s
for 6 GB on 2 cores, three times more on a virtual machine that has handed the memory back to
its host (docs/speed.md). With O_DIRECT the device reads the bytes from the process's own
buffer: the same 6 GB cost 1.4-1.9 CPU-s of kernel time, and the pages of outputs nobody reads
soon do not push the inputs out of the cache.

O_DIRECT wants every write's buffer address, file offset and length aligned to the device's
logical block, so bytes are gathered in a page-aligned buffer and written in multiples of
ALIGN; the last block is padded and the file truncated back to its length. Filesystems that
refuse O_DIRECT (tmpfs before Linux 6.6, some network and FUSE filesystems) get ordinary
writes, as does every output with the engine option direct_io=False (default: the
environment's MTL_DIRECT_IO, on unless it is 0).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from typing import Any

import numpy as np

# Offsets and lengths of direct writes are multiples of this: 4096 covers devices with 512-byte
# and 4K logical blocks. A device wanting more refuses the write (EINVAL), and the file goes on
# with ordinary writes.
ALIGN = 4096
BUFFER_BYTES = 8 << 20
# How filesystems say no to O_DIRECT, when it is set or at a write.
_REFUSED = (errno.EINVAL, errno.EOPNOTSUPP)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; False where the filesystem refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError as err:
        if err.errno in _REFUSED:
            return False
        raise
    return True


class DirectFile:
    """The writing end of an open file (`fd`, owned by the caller), with O_DIRECT if `direct`
    and the filesystem takes it. `write` takes any contiguous buffer; `close` writes what is
    left and leaves the file exactly the bytes written (it does not close `fd`). Used by one
    thread at a time (a writer lane)."""

    def __init__(self, fd: int, direct: bool = True) -> None:
        self._fd = fd
        self.direct = direct and _set_direct(fd, True)
        self._map: mmap.mmap | None = None
        self._buffer = np.empty(0, dtype=np.uint8)
        if self.direct:
            self._map = mmap.mmap(-1, BUFFER_BYTES)  # anonymous maps are page-aligned
            self._buffer = np.frombuffer(self._map, dtype=np.uint8)
        self._filled = 0
        self._size = 0  # bytes of the file so far, padding excluded

    def write(self, data: Any) -> int:
        source = np.frombuffer(data, dtype=np.uint8)
        written = len(source)
        self._size += written
        while len(source):
            if not self.direct:  # never set, or given up in _drain (which empties the buffer)
                self._write_all(memoryview(source))
                break
            n = min(len(source), len(self._buffer) - self._filled)
            # numpy copies without the GIL: the merge's main thread goes on meanwhile.
            self._buffer[self._filled : self._filled + n] = source[:n]
            self._filled += n
            source = source[n:]
            if self._filled == len(self._buffer):
                self._drain(self._filled)
        return written

    def _drain(self, nbytes: int) -> None:
        """Write the buffer's first `nbytes` (a multiple of ALIGN while O_DIRECT is on)."""
        if self._map is None or not nbytes:
            return
        with memoryview(self._map) as view:
            self._write_all(view[:nbytes])
        self._filled = 0

    def _write_all(self, view: memoryview) -> None:
        while len(view):
            try:
                view = view[os.write(self._fd, view) :]
            except OSError as err:
                # Some filesystems take the flag and refuse the write; go on without it (the
                # offset so far is aligned, so nothing was written out of place).
                if err.errno not in _REFUSED or not self.direct:
                    raise
                _set_direct(self._fd, False)
                self.direct = False

    def close(self) -> None:
        """Write what is buffered; a second close finds nothing left to do."""
        if self._filled:
            end = -(-self._filled // ALIGN) * ALIGN if self.direct else self._filled
            self._buffer[self._filled : end] = 0  # O_DIRECT writes whole blocks: pad the last
            self._drain(end)
            if end > self._filled:
                os.ftruncate(self._fd, self._size)
        if self._map is not None:
            self._buffer = np.empty(0, dtype=np.uint8)  # a map with views cannot close
            self._map.close()
            self._map = None
