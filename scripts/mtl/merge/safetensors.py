"""Safetensors files, read tensor by tensor (written by mtl.merge.shards).

Reading checks every header entry (dtype, shape, offsets inside the file) before a tensor is
read.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from mtl.merge.options import MergeError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class Spec:
    """What the output holds for one tensor name: θ_G's dtype and shape."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


Rows = tuple[int, int] | None  # a block of a tensor's rows [first, last); None: all of it


@dataclass(frozen=True)
class TensorInfo:
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute offset of the tensor's bytes in `file`
    nbytes: int


def _pickle_refusal(path: Path) -> MergeError:
    return MergeError(
        f"{path}: pickle checkpoints are refused (unpickling can run arbitrary code); "
        "convert the model to safetensors first"
    )


def _read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if size < 8 or length > size - 8:
            raise MergeError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise MergeError(f"{path}: unreadable safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise MergeError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, entry in header.items():
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(dim) for dim in entry["shape"])
            begin, end = (int(offset) for offset in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise MergeError(
                f"{path}: tensor {name!r} has an unsupported or malformed header entry {entry!r}"
            ) from None
        nbytes = math.prod(shape) * dtype.itemsize
        if end - begin != nbytes or 8 + length + end > size:
            raise MergeError(
                f"{path}: tensor {name!r} data offsets [{begin}, {end}] do not match its "
                f"shape {list(shape)} and dtype, or run past the end of the file"
            )
        tensors[name] = TensorInfo(dtype, shape, path, 8 + length + begin, nbytes)
    return tensors, metadata


def _weight_files(path: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files of a model folder or file, and its index's weight map if any."""
    if not path.exists():
        raise MergeError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise _pickle_refusal(path)
        if path.suffix != ".safetensors":
            raise MergeError(f"{path}: not a .safetensors file")
        return [path], None
    index = path / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise MergeError(f"{index}: unreadable index ({err!r})") from None
        files = sorted({path / name for name in weight_map.values()})
        for file in files:
            if not file.is_file():
                raise MergeError(f"{index}: lists shard {file.name}, which does not exist")
        return files, weight_map
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"], None
    files = sorted(path.glob("*.safetensors"))
    if files:
        return files, None
    pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise _pickle_refusal(pickles[0])
    raise MergeError(f"{path}: no *.safetensors weights found")


class Checkpoint:
    """A model folder or a single .safetensors file, read tensor by tensor.

    Reads use pread into reusable buffers rather than memory mapping: mapped pages stay resident,
    and count in RSS, until the mapping closes, so mapping a 10 GB shard would grow the process by
    10 GB; with plain reads the peak stays at a few tensors.
    """

    def __init__(self, path: Path | str, role: str) -> None:
        self.path = Path(path)
        self.label = f"{role} {self.path}"
        files, weight_map = _weight_files(self.path)
        self.tensors: dict[str, TensorInfo] = {}
        self.metadata: dict[str, str] = {}
        for file in files:
            tensors, metadata = _read_header(file)
            for name in sorted(tensors.keys() & self.tensors.keys()):
                raise MergeError(f"{file}: tensor {name!r} also appears in another shard")
            self.tensors.update(tensors)
            self.metadata.update(metadata)
        if weight_map is not None:
            self._check_index(weight_map)
        self.config = self._read_config()
        self._fds: dict[Path, int] = {}

    def _check_index(self, weight_map: Mapping[str, str]) -> None:
        for name, info in self.tensors.items():
            if weight_map.get(name) != info.file.name:
                raise MergeError(
                    f"{self.path / INDEX}: tensor {name!r} is in {info.file.name} but the "
                    f"index says {weight_map.get(name)!r}"
                )
        for name in weight_map.keys() - self.tensors.keys():
            raise MergeError(f"{self.path / INDEX}: lists tensor {name!r}, found in no shard")

    def _read_config(self) -> dict | None:
        file = self.path / "config.json"
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise MergeError(f"{file}: not valid JSON ({err.msg})") from None

    def specs(self) -> dict[str, Spec]:
        """Tensor dtypes and shapes in on-disk order, so a pass reads each file front to back."""
        ordered = sorted(self.tensors.items(), key=lambda item: (item[1].file, item[1].start))
        return {name: Spec(info.dtype, info.shape) for name, info in ordered}

    def read(
        self, name: str, rows: Rows = None, buffer: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tensor `name` (or its rows [first, last), as far as it has them) in its stored dtype,
        read into `buffer` (uint8, large enough) if given."""
        info = self.tensors[name]
        shape, start, nbytes = info.shape, info.start, info.nbytes
        if rows is not None:
            row_bytes = nbytes // shape[0]
            first, last = rows[0], max(rows[0], min(rows[1], shape[0]))
            shape = (last - first, *shape[1:])
            start, nbytes = start + first * row_bytes, (last - first) * row_bytes
        if buffer is None:
            buffer = torch.empty(nbytes, dtype=torch.uint8)
        raw = buffer[:nbytes]
        fd = self._fds.get(info.file)
        if fd is None:
            fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        view = memoryview(raw.numpy())
        done = 0
        while done < nbytes:
            got = os.preadv(fd, [view[done:]], start + done)
            if got == 0:
                raise MergeError(f"{info.file}: file ends inside tensor {name!r}")
            done += got
        return raw.view(info.dtype).view(shape)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
