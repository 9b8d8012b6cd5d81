"""Safetensors shards written as a stream (headers first): every shard's header is planned from
the shapes, so data goes out in one pass while background threads hash and write it."""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from mtl.hashing import finish, new_hasher
from mtl.merge.direct import DirectFile
from mtl.merge.inputs import check_range
from mtl.merge.safetensors import DTYPE_NAMES, Spec


@dataclass(frozen=True)
class Shard:
    filename: str
    names: tuple[str, ...]
    header: bytes  # length prefix + JSON header, padded so the data starts 8-byte aligned


def shard_header(specs: Mapping[str, Spec], names: Sequence[str], metadata: Mapping) -> bytes:
    entries: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in names:
        spec = specs[name]
        entries[name] = {
            "dtype": DTYPE_NAMES[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    body = json.dumps(entries, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return len(body).to_bytes(8, "little") + body


def plan_shards(
    specs: Mapping[str, Spec], shard_size: int, metadata: Mapping[str, str]
) -> list[Shard]:
    """Split the tensors, in order, into shards of at most shard_size data bytes (Hugging Face
    names); every offset is known from the shapes, so each header is written before its data."""
    groups: list[list[str]] = [[]]
    used = 0
    for name, spec in specs.items():
        if groups[-1] and used + spec.nbytes > shard_size:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += spec.nbytes
    n = len(groups)
    filenames = (
        ["model.safetensors"]
        if n == 1
        else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    )
    return [
        Shard(filename, tuple(group), shard_header(specs, group, metadata))
        for filename, group in zip(filenames, groups, strict=True)
    ]


class _Pool:
    """Reusable uint8 buffers of one size, allocated on first need up to `limit`; taking one
    waits while all are in use (the merge waits when it gets ahead of the writer)."""

    def __init__(self, nbytes: int, limit: int) -> None:
        self.nbytes = nbytes
        self._limit = limit
        self._made = 0
        self._free: queue.Queue[torch.Tensor] = queue.Queue()

    def take(self) -> torch.Tensor:
        if self._free.empty() and self._made < self._limit:
            self._made += 1
            return torch.empty(self.nbytes, dtype=torch.uint8)
        return self._free.get()

    def give(self, buffer: torch.Tensor) -> None:
        self._free.put(buffer)


class Writer:
    """Hashes and writes output data on background threads, each file's data in order.

    A grid writes every byte N times, so writing is disk-bound. Each file belongs to one of
    two threads (lanes), which hashes each buffer and then writes it (the second pass over it
    finds it in the CPU cache; mtl.merge.direct takes it past the page cache) while the main
    thread computes the next blocks; two lanes keep two writes in flight, which is what the
    disk needs for its full speed (four measured no faster). Data goes out in buffers from two
    pools: staging buffers of STAGE_BYTES, which files fill with many small blocks before they
    are submitted (a submission costs tens of microseconds of Python and thread hand-over, as
    much as the arithmetic of a small block), and, for values larger than that (whole tensors
    of TIES/DARE), buffers of `large_bytes`, at most four. Bounded pools bound memory.
    """

    STAGE_BYTES = 4 << 20
    LARGE_BUFFERS = 4

    def __init__(self, large_bytes: int, n_files: int = 1) -> None:
        # Two lanes where there are two files and two cores to share them.
        lanes = max(1, min(2, n_files, os.cpu_count() or 1))
        # Each file holds one staging buffer while it fills it; the rest are in flight. Three
        # in flight a file, not one: a lane hashes, copies and then waits for its write, so it
        # falls behind in bursts, and with one buffer a file the main thread waits for a free
        # one; more than three absorb no more of the bursts.
        self._stage = _Pool(self.STAGE_BYTES, 4 * n_files + 2)
        self._large = _Pool(max(large_bytes, self.STAGE_BYTES), self.LARGE_BUFFERS)
        Job = tuple[Callable[[], object], torch.Tensor | None]
        self._queues: list[queue.Queue[Job | None]] = [queue.Queue() for _ in range(lanes)]
        self._next_lane = 0
        self._error: BaseException | None = None
        self._abandoned = False
        self._threads = [
            threading.Thread(target=self._run, args=(q,), name=f"merge-writer-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]

    def __enter__(self) -> Writer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            self._abandoned = True  # the outputs are being discarded: skip the queued work
        for jobs in self._queues:
            jobs.put(None)
        for thread in self._threads:
            thread.join()
        if exc is None:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def lane(self) -> int:
        """A lane for a new file: lanes take files in turn."""
        lane = self._next_lane
        self._next_lane = (lane + 1) % len(self._queues)
        return lane

    def buffer(self, nbytes: int) -> torch.Tensor:
        """A free uint8 buffer of at least `nbytes` (waits for one); pass it back as `release`
        to `submit`, or to `give_back` unused."""
        pool = self._stage if nbytes <= self.STAGE_BYTES else self._large
        buffer = pool.take()
        self._raise_if_failed()
        return buffer

    def give_back(self, buffer: torch.Tensor) -> None:
        (self._stage if buffer.numel() == self.STAGE_BYTES else self._large).give(buffer)

    def submit(
        self, lane: int, job: Callable[[], object], release: torch.Tensor | None = None
    ) -> None:
        """Queue `job` on `lane`, after the lane's earlier jobs; `release` goes back to its pool
        when it has run."""
        self._queues[lane].put((job, release))

    def _run(self, jobs: queue.Queue) -> None:
        while (item := jobs.get()) is not None:
            job, release = item
            try:
                if self._error is None and not self._abandoned:
                    job()
            except BaseException as err:
                self._error = err
            finally:
                if release is not None:
                    self.give_back(release)


class StreamedFile:
    """One safetensors file: its header, then tensors in header order, hashed as it goes out
    (on the writer's thread, so the hash needs no second read of the file). `handle` is the
    open file, closed by its owner after the writer has finished; its bytes go out past the
    page cache where `direct` and the filesystem allow it (mtl.merge.direct)."""

    def __init__(self, handle: Any, header: bytes, writer: Writer, direct: bool) -> None:
        self.handle = DirectFile(handle.fileno(), direct)
        self._writer = writer
        self._lane = writer.lane()
        self._hash = new_hasher()
        self._stage: torch.Tensor | None = None  # the staging buffer being filled (uint8)
        self._typed = torch.empty(0)  # the same buffer viewed as the dtype of its last block
        self._filled = 0
        writer.submit(self._lane, partial(self._put, header))

    def _put(self, data: Any) -> None:
        self._hash.update(data)
        self.handle.write(data)

    def write(self, value: torch.Tensor, dtype: torch.dtype, what: str, check: bool = True) -> None:
        """Cast float32 `value` (a contiguous tensor or block of its rows) to `dtype` and queue
        its bytes; first check that it is finite and fits `dtype`, unless `check` is False (the
        caller has proved it)."""
        if check:
            check_range(value, what, dtype)
        nbytes = value.numel() * dtype.itemsize
        if nbytes > Writer.STAGE_BYTES:
            self.flush()
            buffer = self._writer.buffer(nbytes)
            buffer[:nbytes].view(dtype).view(value.shape).copy_(value)
            self._writer.submit(self._lane, partial(self._put, buffer[:nbytes].numpy()), buffer)
            return
        # A staging buffer holds blocks of one dtype (a file may mix them), viewed as it.
        if self._stage is not None and (
            self._filled + nbytes > Writer.STAGE_BYTES or self._typed.dtype != dtype
        ):
            self.flush()
        if self._stage is None:
            self._stage = self._writer.buffer(nbytes)
            self._typed = self._stage.view(dtype)
        first = self._filled // dtype.itemsize
        self._typed[first : first + value.numel()].copy_(value.reshape(-1))
        self._filled += nbytes

    def flush(self) -> None:
        """Queue what the staging buffer holds."""
        if self._stage is None:
            return
        stage, filled = self._stage, self._filled
        self._stage, self._filled = None, 0
        if filled:
            job = partial(self._put, stage[:filled].numpy())
            self._writer.submit(self._lane, job, release=stage)
        else:
            self._writer.give_back(stage)

    def close(self) -> None:
        """Queue the file's close, after its last write."""
        self.flush()
        self._writer.submit(self._lane, self.handle.close)

    @property
    def digest(self) -> str:
        """The file's hash (mtl.hashing's algorithm); complete once the writer's threads
        have finished."""
        return finish(self._hash)
