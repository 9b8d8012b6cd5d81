"""What a method sees of one tensor: `TensorInputs`, and the sparsifications it caches.

Inputs are float32 copies in reusable scratch buffers, so a method can never modify a model or
a task vector it was given.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mtl.merge.options import EngineOptions, MergeError


class Scratch:
    """Reusable buffers by role, each grown to the largest tensor it has held.

    A fresh multi-megabyte allocation comes as new zero-filled pages, and faulting them in costs
    about four times the arithmetic itself; keeping one buffer per role avoids that per tensor.
    The views handed out are kept too: a pass asks for the same few block shapes thousands of
    times, and making a view costs microseconds, as much as the arithmetic of a small block.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.device], torch.Tensor] = {}
        self._views: dict[tuple[str, torch.device, torch.dtype, tuple[int, ...]], torch.Tensor] = {}

    def get(
        self,
        role: str,
        shape: Sequence[int],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        device = torch.device(device)
        shape = tuple(shape)
        view = self._views.get((role, device, dtype, shape))
        if view is not None:
            return view
        nbytes = math.prod(shape) * dtype.itemsize
        buffer = self._buffers.get((role, device))
        if buffer is None or buffer.numel() < nbytes:
            buffer = self._buffers[(role, device)] = torch.empty(
                nbytes, dtype=torch.uint8, device=device
            )
            # Views of the old buffer would keep it alive.
            self._views = {key: v for key, v in self._views.items() if key[:2] != (role, device)}
        view = self._views[(role, device, dtype, shape)] = buffer[:nbytes].view(dtype).view(shape)
        return view


@dataclass(frozen=True)
class Source:
    """One input of one tensor: how to get it (stored dtype) and how to name it in errors."""

    read: Callable[[], torch.Tensor]
    label: str
    is_model: bool  # vocabulary padding: a model's missing rows are θ_G's, a task vector's zero


def check_range(tensor: torch.Tensor, what: str, dtype: torch.dtype = torch.float32) -> float:
    """Raise unless every value of float32 `tensor` is finite and fits in `dtype`; return the
    largest magnitude (0 for an empty tensor)."""
    if tensor.numel() == 0:
        return 0.0
    low, high = (float(v) for v in torch.aminmax(tensor))
    limit = torch.finfo(dtype).max
    if low >= -limit and high <= limit:  # False for NaN
        return max(-low, high)
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
    Every input and every τ_k or θ_k has a bound on its magnitude (`bound`), from the range
    check each input gets anyway, so a method can prove its output in range without a pass
    over it.
    """

    def __init__(
        self,
        name: str,
        shape: Sequence[int],
        *,
        general: Source,
        pre: Source | None,
        skills: Sequence[Source],
        skills_are_tau: bool,
        options: EngineOptions,
        scratch: Scratch,
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
        self._bounds: dict[int, float] = {}  # id(tensor) → max |entry|, for cached tensors

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

        def source(tensor: torch.Tensor, label: str, is_model: bool) -> Source:
            return Source(lambda: tensor, label, is_model)

        return cls(
            name,
            theta_general.shape,
            general=source(theta_general, "theta_general", True),
            pre=None if theta_pre is None else source(theta_pre, "theta_pre", True),
            skills=[source(t, f"skill {k}", not tau) for k, t in enumerate(tau or theta)],
            skills_are_tau=bool(tau),
            options=EngineOptions.of(options),
            scratch=Scratch(),
        )

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute(), once per tensor: what a method derives from the inputs alone (its
        sparsified task vectors, say) serves every grid point."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def bound(self, tensor: torch.Tensor) -> float:
        """An upper bound on |entry| of an input or a τ_k/θ_k this object has given out."""
        try:
            return self._bounds[id(tensor)]
        except KeyError:
            raise MergeError(f"tensor {self.name!r}: no bound known for this tensor") from None

    def _load(self, source: Source, role: str) -> torch.Tensor:
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
        self._bounds[id(out)] = check_range(out, f"{source.label}: tensor {self.name!r}")
        return out

    @property
    def theta_general(self) -> torch.Tensor:
        """θ_G."""
        return self.cached("theta_general", lambda: self._load(self._general, "theta_general"))

    @property
    def theta_pre(self) -> torch.Tensor:
        """θ_pre."""
        if self._pre is None:
            raise MergeError(f"tensor {self.name!r}: this merge needs theta_pre")
        return self.cached("theta_pre", lambda: self._load(self._pre, "theta_pre"))

    @property
    def tau(self) -> list[torch.Tensor]:
        """τ_k of every skill (read from task vectors, or θ_k − θ_pre)."""
        return self.cached("tau", self._compute_tau)

    def _compute_tau(self) -> list[torch.Tensor]:
        if self._skills_are_tau:
            return [self._load(s, f"tau{k}") for k, s in enumerate(self._skills)]
        return self._converted("tau", torch.Tensor.sub_)

    @property
    def theta(self) -> list[torch.Tensor]:
        """θ_k of every skill (read from finetuned models, or θ_pre + τ_k)."""
        return self.cached("theta", self._compute_theta)

    def _compute_theta(self) -> list[torch.Tensor]:
        if not self._skills_are_tau:
            return [self._load(s, f"theta{k}") for k, s in enumerate(self._skills)]
        return self._converted("theta", torch.Tensor.add_)

    def _converted(
        self, role: str, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> list[torch.Tensor]:
        """The skills loaded into `role`'s buffers (one per skill) and turned there into that
        view with θ_pre (τ_k = θ_k − θ_pre, θ_k = τ_k + θ_pre); |a ± θ_pre| ≤ |a| + |θ_pre|."""
        values = []
        for k, skill in enumerate(self._skills):
            value = self._load(skill, f"{role}{k}")
            self._bounds[id(value)] += self.bound(self.theta_pre)
            values.append(op(value, self.theta_pre))
        return values

    @property
    def tau_general(self) -> torch.Tensor:
        """τ_G = θ_G − θ_pre."""
        return self.cached(
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
        return self.cached(
            "trimmed", lambda: [_trim(t, density) for t in (self.tau_general, *self.tau)]
        )

    def dropped(self) -> list[torch.Tensor]:
        """[τ_G, τ_1, …], each after DARE's random drop and 1/(1 − p) rescale."""
        density, seed = self.options.density, self.options.seed
        return self.cached(
            "dropped",
            lambda: [
                _drop(t, density, mask_seed(seed, self.name, j))
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


def mask_seed(seed: int, name: str, index: int) -> int:
    """The seed of the random mask of input `index` (0: τ_G) of tensor `name`: the same at
    every grid point, on every device and in every run."""
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
