"""Merge engine: every model merge of the workflow ("Merge to Learn", Morrison et al. 2024).

Notation follows the paper. θ_pre (`theta_pre`) is the pretrained model, θ_G (`theta_general`)
θ_pre finetuned on the general mix, θ_D a model finetuned on skill D, τ_D = θ_D − θ_pre its task
vector (`tau`) and ω (`omega`) the weight of a skill. Every method of `METHODS` works on one
tensor name at a time, in float32, and the result is cast back to θ_G's stored dtype.

Two ways in:

* `merge_to_disk` reads each input tensor once and writes N merged models (one per weight
  setting of a grid) as sharded safetensors folders, hashing every file as its bytes go out.
* `InPlaceMerger` sets a loaded model's parameters to one grid point after another, on the
  model's device, for evaluation sweeps that should not touch disk.

`extract_task_vector` writes τ = θ_D − θ_pre as one float32 safetensors file. All inputs are
checked from their headers (names, shapes, dtypes, config.json) before anything is written;
every problem is a `MergeError` naming the file and tensor, and leaves no output behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from tqdm import tqdm

from mtl import __version__
from mtl.io import atomic_dir, atomic_file, write_json

__all__ = [
    "METHODS",
    "EngineOptions",
    "InPlaceMerger",
    "MergeError",
    "Method",
    "TensorInputs",
    "extract_task_vector",
    "heuristic_omega",
    "merge_to_disk",
]


class MergeError(ValueError):
    """A merge input or output is unusable; the message names the file and/or tensor."""


# --------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class EngineOptions:
    """Options of one merge; `options={}` means all defaults.

    density:       ties/dare/dare_ties: fraction of each task vector kept (DARE: p = 1 − density).
    normalize:     ties/dare_ties: divide by the summed weights of the entries that survive the
                   sign election (mergekit's `normalize`). Off by default, as the paper's
                   task-arithmetic recipe (normalize: false), so θ_G keeps weight 1.
    seed:          dare/dare_ties: seed of the drop masks.
    resize_vocab:  None refuses inputs whose vocabulary differs from θ_G's (Llama-2 has 32000
                   rows, Tülu 32001). "pad" gives a smaller input θ_G's missing rows: a model
                   (θ_pre, θ_D) gets θ_G's own rows, a task vector zeros; either way the extra
                   tokens keep θ_G's embedding. Inputs larger than θ_G are always refused, since
                   the output keeps θ_G's tokenizer.
    vocab_tensors: name suffixes of the tensors whose first dimension is the vocabulary.
    shard_size:    bytes of tensor data per output shard (Hugging Face's default, 5 GB).
    progress:      show a progress bar on stderr.
    """

    density: float = 0.5
    normalize: bool = False
    seed: int = 0
    resize_vocab: Literal["pad"] | None = None
    vocab_tensors: tuple[str, ...] = ("embed_tokens.weight", "lm_head.weight")
    shard_size: int = 5_000_000_000
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.density <= 1:
            raise MergeError(f"option density={self.density!r} must be in (0, 1]")
        if self.resize_vocab not in (None, "pad"):
            raise MergeError(f"option resize_vocab={self.resize_vocab!r} must be None or 'pad'")
        if self.shard_size <= 0:
            raise MergeError(f"option shard_size={self.shard_size!r} must be positive")

    @classmethod
    def of(cls, options: Mapping[str, Any] | EngineOptions) -> EngineOptions:
        if isinstance(options, EngineOptions):
            return options
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise MergeError(f"unknown merge option(s) {unknown}; known: {sorted(known)}")
        values = dict(options)
        if "vocab_tensors" in values:
            values["vocab_tensors"] = tuple(values["vocab_tensors"])
        return cls(**values)


# --------------------------------------------------------------------------------------------
# Reading safetensors

_DTYPES: dict[str, torch.dtype] = {
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
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_INDEX = "model.safetensors.index.json"
# config.json keys that must agree for two checkpoints to be the same architecture. The
# vocabulary size is left to the tensor shapes, where `resize_vocab` can reconcile it.
_ARCH_KEYS = (
    "model_type",
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)


@dataclass(frozen=True)
class _Spec:
    """What the output holds for one tensor name: θ_G's dtype and shape."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


Rows = tuple[int, int] | None  # a block of a tensor's rows [first, last); None: all of it

# Elementwise methods go through big tensors in blocks of about this many entries (4 MB in
# float32): the block's inputs and outputs stay in the CPU cache between the steps of a merge,
# and memory stays flat however large the model's tensors are.
_BLOCK_ELEMENTS = 1 << 20


def _blocks(shape: tuple[int, ...], elementwise: bool) -> list[Rows]:
    """Row blocks covering a tensor, or [None] when it must be merged whole."""
    if not elementwise or not shape or shape[0] == 0:
        return [None]
    step = max(1, _BLOCK_ELEMENTS // max(1, math.prod(shape[1:])))
    return [(first, min(first + step, shape[0])) for first in range(0, shape[0], step)]


def _block_shape(shape: tuple[int, ...], rows: Rows) -> tuple[int, ...]:
    return shape if rows is None else (rows[1] - rows[0], *shape[1:])


@dataclass(frozen=True)
class _TensorInfo:
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


def _read_header(path: Path) -> tuple[dict[str, _TensorInfo], dict[str, str]]:
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
            dtype = _DTYPES[entry["dtype"]]
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
        tensors[name] = _TensorInfo(dtype, shape, path, 8 + length + begin, nbytes)
    return tensors, metadata


def _weight_files(path: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files of a model folder or file, and its index's weight map if any."""
    if not path.exists():
        raise MergeError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix in _PICKLE_SUFFIXES:
            raise _pickle_refusal(path)
        if path.suffix != ".safetensors":
            raise MergeError(f"{path}: not a .safetensors file")
        return [path], None
    index = path / _INDEX
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
    pickles = sorted(p for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise _pickle_refusal(pickles[0])
    raise MergeError(f"{path}: no *.safetensors weights found")


class _Checkpoint:
    """A model folder or a single .safetensors file, read tensor by tensor.

    Reads use pread into reusable buffers rather than memory mapping: mapped pages stay resident,
    and count in RSS, until the mapping closes, so mapping a 10 GB shard would grow the process by
    10 GB; with plain reads the peak stays at a few tensors.
    """

    def __init__(self, path: Path | str, role: str) -> None:
        self.path = Path(path)
        self.label = f"{role} {self.path}"
        files, weight_map = _weight_files(self.path)
        self.tensors: dict[str, _TensorInfo] = {}
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
                    f"{self.path / _INDEX}: tensor {name!r} is in {info.file.name} but the "
                    f"index says {weight_map.get(name)!r}"
                )
        for name in weight_map.keys() - self.tensors.keys():
            raise MergeError(f"{self.path / _INDEX}: lists tensor {name!r}, found in no shard")

    def _read_config(self) -> dict | None:
        file = self.path / "config.json"
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise MergeError(f"{file}: not valid JSON ({err.msg})") from None

    def specs(self) -> dict[str, _Spec]:
        """Tensor dtypes and shapes in on-disk order, so a pass reads each file front to back."""
        ordered = sorted(self.tensors.items(), key=lambda item: (item[1].file, item[1].start))
        return {name: _Spec(info.dtype, info.shape) for name, info in ordered}

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


# --------------------------------------------------------------------------------------------
# Per-tensor inputs and the methods


class _Scratch:
    """Reusable buffers by role, each grown to the largest tensor it has held.

    A fresh multi-megabyte allocation comes as new zero-filled pages, and faulting them in costs
    about four times the arithmetic itself; keeping one buffer per role avoids that per tensor.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.device], torch.Tensor] = {}

    def get(
        self,
        role: str,
        shape: Sequence[int],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        nbytes = math.prod(shape) * dtype.itemsize
        key = (role, torch.device(device))
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < nbytes:
            buffer = self._buffers[key] = torch.empty(nbytes, dtype=torch.uint8, device=device)
        return buffer[:nbytes].view(dtype).view(tuple(shape))


@dataclass(frozen=True)
class _Source:
    """One input of one tensor: how to get it (stored dtype) and how to name it in errors."""

    read: Callable[[], torch.Tensor]
    label: str
    is_model: bool  # vocabulary padding: a model's missing rows are θ_G's, a task vector's zero


def _check_range(tensor: torch.Tensor, what: str, dtype: torch.dtype = torch.float32) -> None:
    """Raise unless every value of float32 `tensor` is finite and fits in `dtype`."""
    if tensor.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(tensor))
    limit = torch.finfo(dtype).max
    if low >= -limit and high <= limit:  # False for NaN
        return
    if torch.isnan(tensor).any():
        problem = "contains NaN"
    elif torch.isinf(tensor).any():
        problem = "contains Inf"
    else:
        problem = f"has values up to {max(-low, high):.3g}, which overflow {dtype} to Inf"
    raise MergeError(f"{what} {problem}")


class TensorInputs:
    """Everything the methods see for one tensor name, as float32 tensors on one device.

    Inputs are read and upcast on first use and then kept for every grid point of the pass;
    derived values (τ_k from θ_k, trimmed or dropped task vectors) are cached the same way.
    The tensors live in shared scratch buffers: they are valid until the next tensor is loaded.
    """

    def __init__(
        self,
        name: str,
        shape: Sequence[int],
        *,
        general: _Source,
        pre: _Source | None,
        skills: Sequence[_Source],
        skills_are_tau: bool,
        options: EngineOptions,
        scratch: _Scratch,
    ) -> None:
        self.name = name
        self.shape = tuple(shape)
        self.options = options
        self._general = general
        self._pre = pre
        self._skills = list(skills)
        self._skills_are_tau = skills_are_tau
        self._scratch = scratch
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_tensors(
        cls,
        name: str,
        *,
        theta_general: torch.Tensor,
        theta_pre: torch.Tensor | None = None,
        tau: Sequence[torch.Tensor] = (),
        theta: Sequence[torch.Tensor] = (),
        options: Mapping[str, Any] | EngineOptions = {},  # noqa: B006 - never mutated
    ) -> TensorInputs:
        """Inputs from in-memory tensors (tests, notebooks); give skills as `tau` or `theta`."""

        def source(tensor: torch.Tensor, label: str, is_model: bool) -> _Source:
            return _Source(lambda: tensor, label, is_model)

        return cls(
            name,
            theta_general.shape,
            general=source(theta_general, "theta_general", True),
            pre=None if theta_pre is None else source(theta_pre, "theta_pre", True),
            skills=[source(t, f"skill {k}", not tau) for k, t in enumerate(tau or theta)],
            skills_are_tau=bool(tau),
            options=EngineOptions.of(options),
            scratch=_Scratch(),
        )

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _load(self, source: _Source, role: str) -> torch.Tensor:
        stored = source.read()
        out = self._scratch.get(role, self.shape, stored.device)
        if stored.shape == out.shape:
            out.copy_(stored)
        else:  # fewer vocabulary rows; allowed by the header checks only with resize_vocab="pad"
            rows = stored.shape[0]
            out[:rows].copy_(stored)
            if source.is_model:
                out[rows:].copy_(self.theta_general[rows:])
            else:
                out[rows:].zero_()
        _check_range(out, f"{source.label}: tensor {self.name!r}")
        return out

    @property
    def theta_general(self) -> torch.Tensor:
        """θ_G."""
        return self._cached("theta_general", lambda: self._load(self._general, "theta_general"))

    @property
    def theta_pre(self) -> torch.Tensor:
        """θ_pre."""
        if self._pre is None:
            raise MergeError(f"tensor {self.name!r}: this merge needs theta_pre")
        return self._cached("theta_pre", lambda: self._load(self._pre, "theta_pre"))

    @property
    def tau(self) -> list[torch.Tensor]:
        """τ_k of every skill (read from task vectors, or θ_k − θ_pre)."""
        return self._cached("tau", self._compute_tau)

    def _compute_tau(self) -> list[torch.Tensor]:
        if self._skills_are_tau:
            return [self._load(s, f"tau{k}") for k, s in enumerate(self._skills)]
        # θ_k is loaded into τ_k's buffer and turned into τ_k there: one buffer per skill.
        return [self._load(s, f"tau{k}").sub_(self.theta_pre) for k, s in enumerate(self._skills)]

    @property
    def theta(self) -> list[torch.Tensor]:
        """θ_k of every skill (read from finetuned models, or θ_pre + τ_k)."""
        return self._cached("theta", self._compute_theta)

    def _compute_theta(self) -> list[torch.Tensor]:
        if not self._skills_are_tau:
            return [self._load(s, f"theta{k}") for k, s in enumerate(self._skills)]
        return [self._load(s, f"theta{k}").add_(self.theta_pre) for k, s in enumerate(self._skills)]

    @property
    def tau_general(self) -> torch.Tensor:
        """τ_G = θ_G − θ_pre."""
        return self._cached(
            "tau_general",
            lambda: torch.sub(
                self.theta_general,
                self.theta_pre,
                out=self._scratch.get("tau_general", self.shape, self.theta_general.device),
            ),
        )

    def trimmed(self) -> list[torch.Tensor]:
        """[τ_G, τ_1, …], each keeping its top `density` fraction by magnitude (TIES' trim)."""
        density = self.options.density
        return self._cached(
            "trimmed", lambda: [_trim(t, density) for t in (self.tau_general, *self.tau)]
        )

    def dropped(self) -> list[torch.Tensor]:
        """[τ_G, τ_1, …], each after DARE's random drop and 1/(1 − p) rescale."""
        density, seed = self.options.density, self.options.seed
        return self._cached(
            "dropped",
            lambda: [
                _drop(t, density, _mask_seed(seed, self.name, j))
                for j, t in enumerate((self.tau_general, *self.tau))
            ],
        )


def _trim(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the k = max(1, int(density·n)) largest-magnitude entries, as mergekit's `magnitude`.

    The k-th largest magnitude is the threshold (a selection, not a full sort); entries tied with
    it are all kept, where mergekit's argsort keeps an arbitrary k of them. Ties need repeated
    values, which happen in low-precision deltas but not in float32 noise.
    """
    if density >= 1 or tau.numel() == 0:
        return tau
    k = max(1, int(density * tau.numel()))
    magnitude = tau.abs()
    threshold = magnitude.flatten().kthvalue(tau.numel() - k + 1).values
    return torch.where(magnitude >= threshold, tau, 0.0)


def _mask_seed(seed: int, name: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{name}\0{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # torch seeds must fit in 63 bits


def _drop(tau: torch.Tensor, density: float, seed: int) -> torch.Tensor:
    """DARE (Yu et al. 2023): drop each entry with p = 1 − density, scale survivors by 1/(1 − p).

    mergekit 0.1.5's dare_linear/dare_ties differ: with `rescale: true` they scale the survivors
    so the tensor's L1 norm matches the undropped one (sparsify.rescaled_masked_tensor), which is
    close to 1/(1 − p) for large tensors but not equal, and their masks are unseeded. Here the
    mask comes from a CPU generator seeded by (seed, tensor name, input index): the same for
    every grid point, device and run, so a sweep varies ω and nothing else.
    """
    if density >= 1:
        return tau
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(tau.shape, generator=generator) < density
    return torch.where(keep.to(tau.device), tau / density, 0.0)


def _sign_elected_sum(
    base: torch.Tensor,
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float],
    normalize: bool,
    out: torch.Tensor,
) -> torch.Tensor:
    """base + TIES' elect and disjoint merge, computed as mergekit 0.1.5 does.

    The weighted deltas vote per entry with the sign of their sum (ties go to +); only deltas
    agreeing with that sign are summed; `normalize` divides by the weights that were summed.
    """
    w = torch.tensor(weights, dtype=torch.float32, device=base.device)
    w = w.view(-1, *([1] * base.dim()))
    weighted = torch.stack(list(deltas)) * w
    majority = torch.where(weighted.sum(dim=0) >= 0, 1.0, -1.0)
    agree = weighted.sign() == majority
    mixed = (weighted * agree).sum(dim=0)
    if normalize:
        divisor = (w * agree).sum(dim=0)
        divisor[divisor == 0] = 1
        mixed /= divisor
    return torch.add(base, mixed, out=out)


MethodFn = Callable[[TensorInputs, tuple[float, ...], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """A merge method: calling it writes one tensor's merge at weights ω into `out`."""

    name: str
    fn: MethodFn
    formula: str
    skills_as: Literal["tau", "theta"]  # which view of the skill inputs the method reads
    needs_theta_pre: bool  # beyond what converting between τ_k and θ_k needs
    options: tuple[str, ...]  # the EngineOptions fields it reads (for recipes)
    mergekit: str | None  # mergekit's name for the method, if it has one
    elementwise: bool  # each output entry depends on the same entry of the inputs only

    def __call__(
        self, x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor
    ) -> torch.Tensor:
        return self.fn(x, omega, out)


METHODS: dict[str, Method] = {}


def register(
    name: str,
    *,
    formula: str,
    skills_as: Literal["tau", "theta"],
    needs_theta_pre: bool = False,
    options: tuple[str, ...] = (),
    mergekit: str | None = None,
    elementwise: bool = False,
) -> Callable[[MethodFn], MethodFn]:
    """Add a method to METHODS under `name` (a paper name)."""

    def add(fn: MethodFn) -> MethodFn:
        if name in METHODS:
            raise ValueError(f"merge method {name!r} is already registered")
        METHODS[name] = Method(
            name, fn, formula, skills_as, needs_theta_pre, options, mergekit, elementwise
        )
        return fn

    return add


@register(
    "task_arithmetic",
    formula="θ = θ_G + Σ_k ω_k·τ_k",
    skills_as="tau",
    mergekit="task_arithmetic",
    elementwise=True,
)
def task_arithmetic(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    torch.add(x.theta_general, x.tau[0], alpha=omega[0], out=out)
    for w, tau in zip(omega[1:], x.tau[1:], strict=True):
        out.add_(tau, alpha=w)
    return out


@register(
    "linear",
    formula="θ = (1 − Σ_k ω_k)·θ_G + Σ_k ω_k·θ_k",
    skills_as="theta",
    mergekit="linear",
    elementwise=True,
)
def linear(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    torch.mul(x.theta_general, 1.0 - sum(omega), out=out)
    for w, theta in zip(omega, x.theta, strict=True):
        out.add_(theta, alpha=w)
    return out


@register(
    "wise_ft",
    formula="θ = (1 − ω)·θ_G + ω·θ_CFT   (θ_CFT: θ_G continued on skill D)",
    skills_as="theta",
    mergekit="linear",
    elementwise=True,
)
def wise_ft(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    # Linear interpolation whose endpoint was trained from θ_G, so θ_pre plays no part.
    return linear(x, omega, out)


@register(
    "ties",
    formula="θ = θ_pre + elect(trim(τ_G), ω_k·trim(τ_k))",
    skills_as="tau",
    needs_theta_pre=True,
    options=("density", "normalize"),
    mergekit="ties",
)
def ties(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    return _sign_elected_sum(x.theta_pre, x.trimmed(), (1.0, *omega), x.options.normalize, out)


@register(
    "dare",
    formula="θ = θ_pre + drop(τ_G) + Σ_k ω_k·drop(τ_k)",
    skills_as="tau",
    needs_theta_pre=True,
    options=("density", "seed"),
    mergekit="dare_linear",
)
def dare(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    dropped = x.dropped()
    torch.add(x.theta_pre, dropped[0], out=out)
    for w, tau in zip(omega, dropped[1:], strict=True):
        out.add_(tau, alpha=w)
    return out


@register(
    "dare_ties",
    formula="θ = θ_pre + elect(drop(τ_G), ω_k·drop(τ_k))",
    skills_as="tau",
    needs_theta_pre=True,
    options=("density", "normalize", "seed"),
    mergekit="dare_ties",
)
def dare_ties(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    return _sign_elected_sum(x.theta_pre, x.dropped(), (1.0, *omega), x.options.normalize, out)


def heuristic_omega(n_skill: int, n_general: int) -> float:
    """The paper's default skill weight |D|/|G|: skill examples over general-mix examples."""
    if n_general <= 0 or n_skill < 0:
        raise MergeError(
            f"heuristic_omega needs n_skill >= 0 and n_general > 0, got {n_skill} and {n_general}"
        )
    return n_skill / n_general


# --------------------------------------------------------------------------------------------
# Validation


def _method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise MergeError(f"unknown merge method {name!r}; known: {sorted(METHODS)}") from None


def _check_config(reference: Mapping | None, ref_label: str, other: _Checkpoint) -> None:
    if reference is None:
        return
    if other.config is not None:
        for key in _ARCH_KEYS:
            if key in reference and key in other.config and reference[key] != other.config[key]:
                raise MergeError(
                    f"{other.label}: config.json has {key}={other.config[key]!r} but {ref_label} "
                    f"has {reference[key]!r}; different architectures cannot be merged"
                )
    model_type = other.metadata.get("model_type")
    if model_type and reference.get("model_type") and model_type != reference["model_type"]:
        raise MergeError(
            f"{other.label}: metadata model_type={model_type!r} but {ref_label} has "
            f"{reference['model_type']!r}; different architectures cannot be merged"
        )


def _check_floating(specs: Mapping[str, _Spec], label: str) -> None:
    for name, spec in specs.items():
        if not spec.dtype.is_floating_point:
            raise MergeError(
                f"{label}: tensor {name!r} has dtype {spec.dtype}; only floating-point tensors "
                "can be merged"
            )


def _check_shape(
    name: str,
    ref_shape: tuple[int, ...],
    ref_label: str,
    shape: tuple[int, ...],
    label: str,
    options: EngineOptions,
) -> None:
    if shape == ref_shape:
        return
    what = (
        f"tensor {name!r} has shape {list(shape)} in {label} but {list(ref_shape)} in {ref_label}"
    )
    is_vocab = any(name.endswith(suffix) for suffix in options.vocab_tensors)
    if not (is_vocab and len(shape) == len(ref_shape) >= 1 and shape[1:] == ref_shape[1:]):
        raise MergeError(f"{what}: shape mismatch")
    if options.resize_vocab is None:
        raise MergeError(
            f"{what}: the vocabulary sizes differ; pass options resize_vocab='pad' to give the "
            "smaller vocabulary the reference's extra rows"
        )
    if shape[0] > ref_shape[0]:
        raise MergeError(
            f"{what}: more vocabulary rows than the reference, whose tokenizer the output keeps"
        )


def _check_tensors(
    reference: Mapping[str, _Spec],
    ref_label: str,
    other: _Checkpoint,
    *,
    is_model: bool,
    options: EngineOptions,
) -> None:
    """Same tensor names and shapes as the reference; models also the same dtypes.

    A task vector may be stored in any float dtype (extract_task_vector writes float32).
    """
    for name in reference:
        if name not in other.tensors:
            raise MergeError(f"{other.label}: tensor {name!r} is missing (it is in {ref_label})")
    for name in other.tensors:
        if name not in reference:
            raise MergeError(f"{other.label}: extra tensor {name!r} (not in {ref_label})")
    _check_floating({n: _Spec(i.dtype, i.shape) for n, i in other.tensors.items()}, other.label)
    for name, spec in reference.items():
        info = other.tensors[name]
        if is_model and info.dtype != spec.dtype:
            raise MergeError(
                f"{other.label}: tensor {name!r} is stored as {info.dtype} but as {spec.dtype} "
                f"in {ref_label}; dtype mismatch"
            )
        _check_shape(name, spec.shape, ref_label, info.shape, other.label, options)


@dataclass
class _Inputs:
    """The checkpoints a merge reads: θ_G (None in place, where the model holds θ_G), θ_pre
    when the merge needs it, and the skill inputs (task vectors or finetuned models)."""

    general: _Checkpoint | None
    pre: _Checkpoint | None
    skills: list[_Checkpoint]
    skills_are_tau: bool

    def close(self) -> None:
        for checkpoint in (self.general, self.pre, *self.skills):
            if checkpoint is not None:
                checkpoint.close()

    def block(
        self,
        name: str,
        rows: Rows,
        shape: tuple[int, ...],
        options: EngineOptions,
        scratch: _Scratch,
    ) -> TensorInputs:
        """The inputs of tensor `name` (of `shape`), or of a block of its rows."""
        block_shape = _block_shape(shape, rows)

        def source(checkpoint: _Checkpoint, is_model: bool) -> _Source:
            nbytes = math.prod(block_shape) * checkpoint.tensors[name].dtype.itemsize

            def read() -> torch.Tensor:
                # One raw buffer serves every input: TensorInputs upcasts each read at once.
                return checkpoint.read(name, rows, scratch.get("raw", (nbytes,), dtype=torch.uint8))

            return _Source(read, checkpoint.label, is_model)

        assert self.general is not None, "in-place merges build TensorInputs themselves"
        return TensorInputs(
            name,
            block_shape,
            general=source(self.general, True),
            pre=None if self.pre is None else source(self.pre, True),
            skills=[source(c, not self.skills_are_tau) for c in self.skills],
            skills_are_tau=self.skills_are_tau,
            options=options,
            scratch=scratch,
        )


def _open_inputs(
    method: Method,
    reference: Mapping[str, _Spec],
    ref_config: Mapping | None,
    ref_label: str,
    *,
    general: _Checkpoint | None,
    theta_pre: Path | None,
    task_vectors: Sequence[Path],
    finetuned: Sequence[Path],
    options: EngineOptions,
) -> _Inputs:
    """Open θ_pre and the skill inputs and check them against the reference's headers."""
    if bool(task_vectors) == bool(finetuned):
        raise MergeError("give the skills either as task_vectors or as finetuned models (one)")
    skills_are_tau = bool(task_vectors)
    # τ_k from θ_k, or θ_k from τ_k, needs θ_pre as much as TIES and DARE do.
    needs_pre = method.needs_theta_pre or skills_are_tau != (method.skills_as == "tau")
    if needs_pre and theta_pre is None:
        given = "task vectors" if skills_are_tau else "finetuned models"
        raise MergeError(f"method {method.name!r} with {given} needs theta_pre")
    inputs = _Inputs(general, None, [], skills_are_tau)
    try:
        if needs_pre:
            inputs.pre = _Checkpoint(theta_pre, "theta_pre")
        role = "task_vectors" if skills_are_tau else "finetuned"
        for k, path in enumerate(task_vectors or finetuned):
            inputs.skills.append(_Checkpoint(path, f"{role}[{k}]"))
        for checkpoint in (inputs.pre, *inputs.skills):
            if checkpoint is None:
                continue
            is_model = checkpoint is inputs.pre or not skills_are_tau
            _check_config(ref_config, ref_label, checkpoint)
            _check_tensors(reference, ref_label, checkpoint, is_model=is_model, options=options)
    except BaseException:
        inputs.close()
        raise
    return inputs


def _weight_rows(settings: Sequence[Sequence[float] | float], n_skills: int) -> list[tuple]:
    """Each setting as a tuple of n_skills finite floats; a bare number is a 1-skill setting."""
    rows = []
    for i, setting in enumerate(settings):
        row = (setting,) if isinstance(setting, (int, float)) else tuple(setting)
        if len(row) != n_skills:
            raise MergeError(
                f"settings[{i}]={setting!r} has {len(row)} weight(s) for {n_skills} skill input(s)"
            )
        try:
            row = tuple(float(w) for w in row)
        except (TypeError, ValueError):
            raise MergeError(f"settings[{i}]={setting!r} is not a list of numbers") from None
        if not all(math.isfinite(w) for w in row):
            raise MergeError(f"settings[{i}]={setting!r} is not finite")
        rows.append(row)
    if not rows:
        raise MergeError("no weight settings given")
    return rows


def _check_out_dirs(out_dirs: Sequence[Path], n_settings: int, inputs: Sequence[Path]) -> None:
    if len(out_dirs) != n_settings:
        raise MergeError(f"{len(out_dirs)} output folders for {n_settings} weight settings")
    resolved = [d.resolve() for d in out_dirs]
    if len(set(resolved)) != len(resolved):
        raise MergeError(f"output folders repeat: {[str(d) for d in out_dirs]}")
    for out in resolved:
        for path in inputs:
            path = path.resolve()
            if out == path or out in path.parents or path in out.parents:
                raise MergeError(f"output folder {out} would overwrite input {path}")


# --------------------------------------------------------------------------------------------
# Writing safetensors


@dataclass(frozen=True)
class _Shard:
    filename: str
    names: tuple[str, ...]
    header: bytes  # length prefix + JSON header, padded so the data starts 8-byte aligned


def _header(specs: Mapping[str, _Spec], names: Sequence[str], metadata: Mapping) -> bytes:
    entries: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in names:
        spec = specs[name]
        entries[name] = {
            "dtype": _DTYPE_NAMES[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    body = json.dumps(entries, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return len(body).to_bytes(8, "little") + body


def _plan_shards(
    specs: Mapping[str, _Spec], shard_size: int, metadata: Mapping[str, str]
) -> list[_Shard]:
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
        _Shard(filename, tuple(group), _header(specs, group, metadata))
        for filename, group in zip(filenames, groups, strict=True)
    ]


class _Writer:
    """Runs file writes on a background thread, in submission order.

    Writing N outputs is disk-bound (the kernel throttles dirty pages); with the writes on their
    own thread the arithmetic and hashing of the next tensors run while the disk catches up.
    Data goes out through a small pool of buffers, which bounds memory and makes the merge wait
    when the disk falls behind.
    """

    def __init__(self, buffer_bytes: int, n_buffers: int = 3) -> None:
        self._free: queue.Queue[torch.Tensor] = queue.Queue()
        for _ in range(n_buffers):
            self._free.put(torch.empty(buffer_bytes, dtype=torch.uint8))
        self._jobs: queue.Queue[tuple[Callable[[], object], torch.Tensor | None] | None]
        self._jobs = queue.Queue()
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="merge-writer", daemon=True)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            self._abandoned = True  # the outputs are being discarded: skip the queued writes
        self._jobs.put(None)
        self._thread.join()
        if exc is None:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def buffer(self) -> torch.Tensor:
        """A free uint8 buffer (waits for one); pass it back as `release` to `submit`."""
        buffer = self._free.get()
        self._raise_if_failed()
        return buffer

    def submit(self, job: Callable[[], object], release: torch.Tensor | None = None) -> None:
        self._jobs.put((job, release))

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, release = item
            try:
                if self._error is None and not self._abandoned:
                    job()
            except BaseException as err:
                self._error = err
            finally:
                if release is not None:
                    self._free.put(release)


class _StreamedFile:
    """One safetensors file: its header, then tensors in header order.

    The writer thread hashes each buffer just before writing it, which takes the hashing off
    the thread doing the arithmetic (the two threads then need about the same CPU time).
    """

    def __init__(self, handle: Any, header: bytes, writer: _Writer) -> None:
        self.handle = handle
        self._writer = writer
        self._hash = hashlib.sha256()
        writer.submit(partial(self._hash_and_write, header))

    def _hash_and_write(self, data: Any) -> None:
        self._hash.update(data)
        self.handle.write(data)

    def write(self, value: torch.Tensor, dtype: torch.dtype, what: str) -> None:
        """Check float32 `value` (a tensor or a block of its rows), cast it to `dtype` and queue
        its bytes."""
        _check_range(value, what, dtype)
        buffer = self._writer.buffer()
        data = buffer[: value.numel() * dtype.itemsize]
        data.view(dtype).view(value.shape).copy_(value)
        self._writer.submit(partial(self._hash_and_write, data.numpy()), release=buffer)

    @property
    def digest(self) -> str:
        """sha256 of the file; complete once the writer thread has finished."""
        return "sha256:" + self._hash.hexdigest()


@contextmanager
def _single_threaded_torch() -> Iterator[None]:
    """Run torch ops on the calling thread only, for the duration of a pass over files.

    The pass is I/O-bound and its ops are small; intra-op worker threads would compete for
    cores with the writer thread and the kernel's writeback, and a parallel op waits for its
    slowest worker. On a 2-core machine two threads made the pass 5x slower than one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------------------------
# Task vectors


def _portable(path: Path) -> str:
    """A path relative to the working directory where possible: artifacts that name their
    inputs must have the same bytes wherever the repository is checked out."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def extract_task_vector(
    theta_pre: Path,
    theta_d: Path,
    out: Path,
    *,
    resize_vocab: Literal["pad"] | None = None,
    progress: bool = True,
) -> str:
    """Write τ_D = θ_D − θ_pre to the safetensors file `out` (atomically); return its sha256.

    τ is stored in float32 whatever the models' dtype: it is the small difference of two large
    numbers, exact in float32 for bf16/fp16 models but rounded again if stored in their dtype.
    Tensor names are θ_D's; the metadata records both inputs and θ_D's model_type, so merges
    can check the architecture and name a mergekit recipe. With resize_vocab="pad", rows θ_pre
    lacks get τ = 0 (the extra tokens keep θ_G's embedding when τ is added to θ_G).
    """
    options = EngineOptions(resize_vocab=resize_vocab, progress=progress)
    out = Path(out)
    with ExitStack() as stack:
        d = _Checkpoint(theta_d, "theta_d")
        stack.callback(d.close)
        pre = _Checkpoint(theta_pre, "theta_pre")
        stack.callback(pre.close)
        specs = d.specs()
        _check_floating(specs, d.label)
        _check_config(d.config, d.label, pre)
        _check_tensors(specs, d.label, pre, is_model=True, options=options)

        out_specs = {name: _Spec(torch.float32, spec.shape) for name, spec in specs.items()}
        metadata = {
            "format": "pt",
            "mtl_kind": "task_vector",
            "theta_pre": _portable(pre.path),
            "theta_d": _portable(d.path),
        }
        if d.config and "model_type" in d.config:
            metadata["model_type"] = str(d.config["model_type"])
        (shard,) = _plan_shards(out_specs, math.inf, metadata)
        inputs = _Inputs(general=d, pre=pre, skills=[], skills_are_tau=True)
        blocks = {name: _blocks(spec.shape, elementwise=True) for name, spec in specs.items()}
        scratch = _Scratch()
        stack.enter_context(_single_threaded_torch())
        handle = stack.enter_context(atomic_file(out, "wb"))
        writer = stack.enter_context(_Writer(_largest_block(out_specs, blocks)))
        file = _StreamedFile(handle, shard.header, writer)
        for name in tqdm(shard.names, desc=f"task vector {out.name}", disable=not progress):
            for rows in blocks[name]:
                # τ_D is TensorInputs' τ_G with θ_D in θ_G's place: θ_pre's missing vocabulary
                # rows are padded with θ_D's, which makes τ zero there.
                x = inputs.block(name, rows, specs[name].shape, options, scratch)
                file.write(x.tau_general, torch.float32, f"task vector {out}: tensor {name!r}")
    return file.digest  # after the writer thread has finished


def _largest_block(specs: Mapping[str, _Spec], blocks: Mapping[str, list[Rows]]) -> int:
    return max(
        math.prod(_block_shape(spec.shape, rows)) * spec.dtype.itemsize
        for name, spec in specs.items()
        for rows in blocks[name]
    )


# --------------------------------------------------------------------------------------------
# Merging to disk


def merge_to_disk(
    method: str,
    theta_general: Path,
    settings: Sequence[Sequence[float] | float],
    out_dirs: Sequence[Path],
    *,
    theta_pre: Path | None = None,
    task_vectors: Sequence[Path] = (),
    finetuned: Sequence[Path] = (),
    options: Mapping[str, Any] | EngineOptions = {},  # noqa: B006 - never mutated
) -> list[dict[str, Any]]:
    """Write one merged model per weight setting, reading every input tensor once.

    method:        a key of METHODS.
    theta_general: θ_G, a model folder (its config, tokenizer and other small files are copied
                   into every output).
    settings:      one weight vector (ω_1, …, ω_K) per output, K = number of skill inputs; a
                   bare number stands for a 1-skill vector, so an ω grid is [0.0, 0.1, …, 1.0].
    out_dirs:      one folder per setting, each written atomically (replacing an old one).
    theta_pre:     θ_pre; needed by ties/dare/dare_ties, to get τ_k from finetuned models and
                   to get θ_k from task vectors (linear, wise_ft).
    task_vectors | finetuned: the K skill inputs, as task vector files or as finetuned models
                   (θ_D, or θ_CFT for wise_ft).
    options:       EngineOptions fields (density, normalize, seed, resize_vocab, shard_size, …).

    Every output folder holds safetensors shards in θ_G's dtype, θ_G's small files, README.md
    (a model card naming the recipe) and, where mergekit has the method and the inputs are
    models it can read, mergekit_config.yml. Returns per output
    {"path": str, "files": {filename: "sha256:…"}, "recipe": {...}}.
    """
    spec = _method(method)
    opts = EngineOptions.of(options)
    theta_general = Path(theta_general)
    out_dirs = [Path(d) for d in out_dirs]
    with ExitStack() as stack:
        general = _Checkpoint(theta_general, "theta_general")
        stack.callback(general.close)
        if general.config is None:
            raise MergeError(f"{theta_general}: θ_G must be a model folder with a config.json")
        specs = general.specs()
        _check_floating(specs, general.label)
        inputs = _open_inputs(
            spec,
            specs,
            general.config,
            general.label,
            general=general,
            theta_pre=theta_pre,
            task_vectors=[Path(p) for p in task_vectors],
            finetuned=[Path(p) for p in finetuned],
            options=opts,
        )
        stack.callback(inputs.close)
        weights = _weight_rows(settings, len(inputs.skills))
        input_paths = [c.path for c in (general, inputs.pre, *inputs.skills) if c is not None]
        _check_out_dirs(out_dirs, len(weights), input_paths)

        shards = _plan_shards(specs, opts.shard_size, {"format": "pt"})
        folders = [stack.enter_context(atomic_dir(d)) for d in out_dirs]
        shard_hashes = _stream_merge(spec, inputs, specs, weights, out_dirs, folders, shards, opts)
        return [
            _finish_folder(folder, out, inputs, spec, omega, opts, shards, specs, hashes)
            for folder, out, omega, hashes in zip(
                folders, out_dirs, weights, shard_hashes, strict=True
            )
        ]


def _stream_merge(
    method: Method,
    inputs: _Inputs,
    specs: Mapping[str, _Spec],
    weights: Sequence[tuple[float, ...]],
    out_dirs: Sequence[Path],
    folders: Sequence[Path],
    shards: Sequence[_Shard],
    options: EngineOptions,
) -> list[dict[str, str]]:
    """The one pass: for each tensor (or block of rows), read the inputs once and write the
    merge to every output."""
    blocks = {name: _blocks(spec.shape, method.elementwise) for name, spec in specs.items()}
    scratch = _Scratch()
    written: list[dict[str, _StreamedFile]] = [{} for _ in folders]
    with ExitStack() as stack:
        stack.enter_context(_single_threaded_torch())
        # Registered before the writer, so files close only after its thread has finished.
        handles = stack.enter_context(ExitStack())
        writer = stack.enter_context(_Writer(_largest_block(specs, blocks)))
        progress = stack.enter_context(
            tqdm(
                total=sum(s.nbytes for s in specs.values()),
                unit="B",
                unit_scale=True,
                desc=f"{method.name} → {len(folders)} model(s)",
                disable=not options.progress,
            )
        )
        for shard in shards:
            files = [
                _StreamedFile(
                    handles.enter_context(open(f / shard.filename, "wb")), shard.header, writer
                )
                for f in folders
            ]
            for name in shard.names:
                spec = specs[name]
                for rows in blocks[name]:
                    x = inputs.block(name, rows, spec.shape, options, scratch)
                    out = scratch.get("out", x.shape)
                    for omega, file, out_dir in zip(weights, files, out_dirs, strict=True):
                        merged = method(x, omega, out)
                        file.write(merged, spec.dtype, f"output {out_dir}: tensor {name!r}")
                    progress.update(math.prod(x.shape) * spec.dtype.itemsize)
            for file, output_files in zip(files, written, strict=True):
                writer.submit(file.handle.close)
                output_files[shard.filename] = file
    # The writer thread has finished, so every file is complete and hashed.
    return [{name: file.digest for name, file in files.items()} for files in written]


_NOT_COPIED = {"README.md", "mergekit_config.yml", _INDEX}


def _finish_folder(
    folder: Path,
    out: Path,
    inputs: _Inputs,
    method: Method,
    omega: tuple[float, ...],
    options: EngineOptions,
    shards: Sequence[_Shard],
    specs: Mapping[str, _Spec],
    shard_hashes: Mapping[str, str],
) -> dict[str, Any]:
    """Add θ_G's small files, the shard index, the model card and the mergekit recipe."""
    for file in sorted(inputs.general.path.iterdir()):
        if (
            file.is_file()
            and not file.name.startswith(".")
            and file.name not in _NOT_COPIED
            and file.suffix not in (".safetensors", *_PICKLE_SUFFIXES)
        ):
            shutil.copy2(file, folder / file.name)
    if len(shards) > 1:
        weight_map = {name: shard.filename for shard in shards for name in shard.names}
        total = sum(spec.nbytes for spec in specs.values())
        write_json(folder / _INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})
    dtype = _dtype_name(next(iter(specs.values())).dtype)
    recipe = _recipe(method, inputs, omega, options, dtype)
    mergekit_yaml = _mergekit_yaml(method, inputs, omega, options, dtype)
    if mergekit_yaml is not None:
        (folder / "mergekit_config.yml").write_text(mergekit_yaml)
    (folder / "README.md").write_text(_model_card(out, recipe, mergekit_yaml))
    files = dict(shard_hashes)
    for file in sorted(folder.iterdir()):
        if file.name not in files:
            files[file.name] = _sha256_file(file)
    return {"path": str(out), "files": dict(sorted(files.items())), "recipe": recipe}


def _recipe(
    method: Method,
    inputs: _Inputs,
    omega: tuple[float, ...],
    options: EngineOptions,
    dtype: str,
) -> dict[str, Any]:
    skill_paths = [str(c.path) for c in inputs.skills]
    used = {name: getattr(options, name) for name in method.options}
    if options.resize_vocab is not None:
        used["resize_vocab"] = options.resize_vocab
    return {
        "method": method.name,
        "formula": method.formula,
        "omega": list(omega),
        "theta_general": str(inputs.general.path),
        "theta_pre": None if inputs.pre is None else str(inputs.pre.path),
        "task_vectors": skill_paths if inputs.skills_are_tau else [],
        "finetuned": [] if inputs.skills_are_tau else skill_paths,
        "options": used,
        "dtype": dtype,
        "engine": f"mtl.merge {__version__}",
    }


def _mergekit_yaml(
    method: Method,
    inputs: _Inputs,
    omega: tuple[float, ...],
    options: EngineOptions,
    dtype: str,
) -> str | None:
    """The mergekit 0.1.5 config that re-makes this output, or None if mergekit cannot.

    mergekit merges models, not task vectors: a task vector is replaced by the θ_D (and θ_pre)
    recorded in its metadata by extract_task_vector; without those there is no recipe.
    """
    if method.mergekit is None:
        return None
    if inputs.skills_are_tau:
        models = [c.metadata.get("theta_d") for c in inputs.skills]
        pre = inputs.skills[0].metadata.get("theta_pre")
    else:
        models = [_portable(c.path) for c in inputs.skills]
        pre = None
    if inputs.pre is not None:
        pre = _portable(inputs.pre.path)
    if None in models:
        return None
    theta_g = _portable(inputs.general.path)
    comments = [
        f"mergekit {method.mergekit} recipe equivalent to mtl.merge {method.name} at "
        f"omega={list(omega)}.",
        "Re-make with: mergekit-yaml mergekit_config.yml OUTPUT_DIR",
    ]
    config: dict[str, Any]
    if method.skills_as == "theta":
        config = {
            "merge_method": method.mergekit,
            "models": [{"model": theta_g, "parameters": {"weight": 1.0 - sum(omega)}}]
            + [
                {"model": m, "parameters": {"weight": w}}
                for m, w in zip(models, omega, strict=True)
            ],
            "parameters": {"normalize": False},
        }
    else:
        if pre is None:
            return None
        extra = {"density": options.density} if "density" in method.options else {}
        config = {
            "merge_method": method.mergekit,
            "base_model": pre,
            "models": [{"model": theta_g, "parameters": {"weight": 1.0, **extra}}]
            + [
                {"model": m, "parameters": {"weight": w, **extra}}
                for m, w in zip(models, omega, strict=True)
            ],
            "parameters": {"normalize": "normalize" in method.options and options.normalize},
        }
        if "seed" in method.options:
            config["parameters"]["rescale"] = True
            comments.append(
                "Not bit-identical: mergekit draws unseeded DARE masks and rescales survivors "
                "to keep the L1 norm; mtl.merge uses seeded masks and the paper's 1/(1-p)."
            )
    config["dtype"] = "float32"
    config["out_dtype"] = dtype
    if options.resize_vocab is not None:
        config["tokenizer_source"] = theta_g
        comments.append(
            "Vocabularies differ: mtl.merge padded missing rows with theta_G's rows (task "
            "vectors with zeros); mergekit's tokenizer_source may fill new rows differently."
        )
    header = "".join(f"# {line}\n" for line in comments)
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _model_card(out: Path, recipe: Mapping[str, Any], mergekit_yaml: str | None) -> str:
    inputs = [("θ_G (theta_general)", recipe["theta_general"])]
    if recipe["theta_pre"]:
        inputs.append(("θ_pre (theta_pre)", recipe["theta_pre"]))
    inputs += [(f"τ_{k + 1} (task vector)", p) for k, p in enumerate(recipe["task_vectors"])]
    inputs += [(f"θ_{k + 1} (finetuned)", p) for k, p in enumerate(recipe["finetuned"])]
    lines = [
        "---",
        "library_name: transformers",
        "tags:",
        "- merge",
        "---",
        "",
        f"# {out.name}",
        "",
        f"Merged by `{recipe['engine']}` with **{recipe['method']}**:",
        "",
        f"    {recipe['formula']}",
        "",
        f"ω = {recipe['omega']}; options: {recipe['options'] or 'none'}; "
        f"stored as {recipe['dtype']}, computed in float32.",
        "",
        "| input | path |",
        "|---|---|",
        *(f"| {role} | `{path}` |" for role, path in inputs),
        "",
        "## Re-make with mergekit",
        "",
    ]
    if mergekit_yaml is None:
        lines.append(
            "No mergekit recipe: mergekit lacks the method, or a task vector does not record "
            "the models it came from."
        )
    else:
        lines += ["```yaml", mergekit_yaml.rstrip(), "```"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Merging in place


class InPlaceMerger:
    """Set a loaded model's parameters to grid points of a merge, without touching disk.

    `model` holds θ_G when the merger is built. The merger keeps a copy of θ_G and loads the
    skill inputs (and θ_pre, if the merge needs it) onto each parameter's device, in their stored
    dtypes; `apply(ω)` recomputes every parameter from those copies in float32 on that device,
    so grid points never accumulate: apply(ω1); apply(ω2) equals apply(ω2) on a fresh θ_G.
    Memory: θ_G's copy plus the inputs. `restore()` puts θ_G back.

    Arguments as merge_to_disk's; options other than the method's are ignored.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task_vectors: Sequence[Path] = (),
        *,
        method: str = "task_arithmetic",
        finetuned: Sequence[Path] = (),
        theta_pre: Path | None = None,
        options: Mapping[str, Any] | EngineOptions = {},  # noqa: B006 - never mutated
    ) -> None:
        self.method = _method(method)
        self.options = EngineOptions.of(options)
        self._params = dict(model.named_parameters())
        specs = {name: _Spec(p.dtype, tuple(p.shape)) for name, p in self._params.items()}
        _check_floating(specs, "model")
        config = model.config.to_dict() if hasattr(model, "config") else None
        label = f"the model ({type(model).__name__})"
        inputs = _open_inputs(
            self.method,
            specs,
            config,
            label,
            general=None,
            theta_pre=None if theta_pre is None else Path(theta_pre),
            task_vectors=[Path(p) for p in task_vectors],
            finetuned=[Path(p) for p in finetuned],
            options=self.options,
        )
        try:
            self._general = {name: p.detach().clone() for name, p in self._params.items()}
            self._pre = None if inputs.pre is None else self._load(inputs.pre)
            self._skills = [self._load(c) for c in inputs.skills]
        finally:
            inputs.close()
        self._labels = {
            "theta_general": label,
            "theta_pre": None if inputs.pre is None else inputs.pre.label,
            "skills": [c.label for c in inputs.skills],
        }
        self._skills_are_tau = inputs.skills_are_tau
        self._scratch = _Scratch()

    def _load(self, checkpoint: _Checkpoint) -> dict[str, torch.Tensor]:
        return {
            name: checkpoint.read(name).to(param.device) for name, param in self._params.items()
        }

    def _inputs(self, name: str) -> TensorInputs:
        def source(tensors: Mapping[str, torch.Tensor], label: str, is_model: bool) -> _Source:
            return _Source(lambda: tensors[name], label, is_model)

        return TensorInputs(
            name,
            self._general[name].shape,
            general=source(self._general, self._labels["theta_general"], True),
            pre=None if self._pre is None else source(self._pre, self._labels["theta_pre"], True),
            skills=[
                source(tensors, label, not self._skills_are_tau)
                for tensors, label in zip(self._skills, self._labels["skills"], strict=True)
            ],
            skills_are_tau=self._skills_are_tau,
            options=self.options,
            scratch=self._scratch,
        )

    @torch.no_grad()
    def apply(self, omegas: Sequence[float] | float) -> None:
        """Set every parameter to the merge at weights `omegas` (one per skill input)."""
        (omega,) = _weight_rows([omegas], len(self._skills))
        try:
            for name, param in self._params.items():
                out = self._scratch.get("out", param.shape, param.device)
                merged = self.method(self._inputs(name), omega, out)
                _check_range(
                    merged, f"in-place merge at ω={list(omega)}: tensor {name!r}", param.dtype
                )
                param.copy_(merged)
        except BaseException:
            self.restore()
            raise

    @torch.no_grad()
    def restore(self) -> None:
        """Put θ_G back."""
        for name, param in self._params.items():
            param.copy_(self._general[name])
