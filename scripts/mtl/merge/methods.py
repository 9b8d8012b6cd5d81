"""The merge methods: each one function, registered with its declaration.

A method gets one tensor's `TensorInputs`, a weight vector ω (one weight per skill) and an
output buffer; it writes the merge into the buffer and touches no file. Its declaration says
which view of the skills it reads (τ_k or θ_k), whether it needs θ_pre, which options it reads,
what the skill models were finetuned from, its mergekit equivalent, whether it is elementwise
and, optionally, a bound on its output's magnitude from its inputs' bounds (where the bound
proves the output fits the output dtype, the engine skips checking it). Adding a method is one
decorated function here (and its test).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.options import MergeError


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


SkillsFrom = Literal["pre", "general", "general_match"]
SKILL_REGIMES: dict[str, str] = {"pre": "ptm", "general": "cft", "general_match": "cft-match"}

MethodFn = Callable[[TensorInputs, tuple[float, ...], torch.Tensor], torch.Tensor]
# An upper bound on |entry| of the method's output at ω, from x.bound() of the inputs it read.
BoundFn = Callable[[TensorInputs, tuple[float, ...]], float]


@dataclass(frozen=True)
class Method:
    """A merge method: calling it writes one tensor's merge at weights ω into `out`."""

    name: str
    fn: MethodFn
    formula: str
    tag: str  # the method's short name in the workflow's targets (merge-<tag>-…)
    skills_as: Literal["tau", "theta"]  # which view of the skill inputs the method reads
    # The skill models' training: from θ_pre on D (PTM), from θ_G on D (CFT), or from θ_G on D
    # plus as many general examples (CFT-match).
    skills_from: SkillsFrom
    needs_theta_pre: bool  # beyond what converting between τ_k and θ_k needs
    options: tuple[str, ...]  # the EngineOptions fields it reads (for recipes)
    mergekit: str | None  # mergekit's name for the method, if it has one
    elementwise: bool  # each output entry depends on the same entry of the inputs only
    bound: BoundFn | None = None  # None: the engine checks every output for Inf and overflow

    @property
    def skill_regime(self) -> str:
        """The workflow's regime that trains the skill models (results/models/<regime>-…)."""
        return SKILL_REGIMES[self.skills_from]

    def __call__(
        self, x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor
    ) -> torch.Tensor:
        return self.fn(x, omega, out)


METHODS: dict[str, Method] = {}


def register(
    name: str,
    *,
    formula: str,
    tag: str,
    skills_as: Literal["tau", "theta"],
    skills_from: SkillsFrom = "pre",
    needs_theta_pre: bool = False,
    options: tuple[str, ...] = (),
    mergekit: str | None = None,
    elementwise: bool = False,
    bound: BoundFn | None = None,
) -> Callable[[MethodFn], MethodFn]:
    """Add a method to METHODS under `name` (a paper name)."""

    def add(fn: MethodFn) -> MethodFn:
        if name in METHODS:
            raise ValueError(f"merge method {name!r} is already registered")
        if not tag.isalnum() or tag in {m.tag for m in METHODS.values()}:
            raise ValueError(f"merge method {name!r}: tag {tag!r} must be new and alphanumeric")
        METHODS[name] = Method(
            name,
            fn,
            formula,
            tag,
            skills_as,
            skills_from,
            needs_theta_pre,
            options,
            mergekit,
            elementwise,
            bound,
        )
        return fn

    return add


# The bounds are the triangle inequality over the float32 sums. Rounding can only add a
# relative 2^-24 per operation, far inside the engine's margin (it trusts a bound up to half the
# output dtype's largest value).


def _task_arithmetic_bound(x: TensorInputs, omega: tuple[float, ...]) -> float:
    skills = zip(omega, x.tau, strict=True)
    return x.bound(x.theta_general) + sum(abs(w) * x.bound(tau) for w, tau in skills)


def _linear_bound(x: TensorInputs, omega: tuple[float, ...]) -> float:
    skills = zip(omega, x.theta, strict=True)
    return abs(1.0 - sum(omega)) * x.bound(x.theta_general) + sum(
        abs(w) * x.bound(theta) for w, theta in skills
    )


@register(
    "task_arithmetic",
    formula="θ = θ_G + Σ_k ω_k·τ_k",
    tag="ta",
    skills_as="tau",
    mergekit="task_arithmetic",
    elementwise=True,
    bound=_task_arithmetic_bound,
)
def task_arithmetic(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    torch.add(x.theta_general, x.tau[0], alpha=omega[0], out=out)
    for w, tau in zip(omega[1:], x.tau[1:], strict=True):
        out.add_(tau, alpha=w)
    return out


@register(
    "linear",
    formula="θ = (1 − Σ_k ω_k)·θ_G + Σ_k ω_k·θ_k",
    tag="linear",
    skills_as="theta",
    mergekit="linear",
    elementwise=True,
    bound=_linear_bound,
)
def linear(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    torch.mul(x.theta_general, 1.0 - sum(omega), out=out)
    for w, theta in zip(omega, x.theta, strict=True):
        out.add_(theta, alpha=w)
    return out


@register(
    "wise_ft",
    formula="θ = (1 − ω)·θ_G + ω·θ_CFT   (θ_CFT: θ_G continued on skill D)",
    tag="wiseft",
    skills_from="general",
    skills_as="theta",
    mergekit="linear",
    elementwise=True,
    bound=_linear_bound,
)
def wise_ft(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    # Linear interpolation whose endpoint was trained from θ_G, so θ_pre plays no part.
    return linear(x, omega, out)


@register(
    "wise_ft_match",
    formula="θ = (1 − ω)·θ_G + ω·θ_CFT-match   (θ_G continued on D plus as many G examples)",
    tag="wiseftmatch",
    skills_from="general_match",
    skills_as="theta",
    mergekit="linear",
    elementwise=True,
    bound=_linear_bound,
)
def wise_ft_match(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    # WiSE-FT itself; only its endpoint's training differs (the paper's Figure 2 compares them).
    return linear(x, omega, out)


@register(
    "ties",
    formula="θ = θ_pre + elect(trim(τ_G), ω_k·trim(τ_k))",
    tag="ties",
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
    tag="dare",
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
    tag="dareties",
    skills_as="tau",
    needs_theta_pre=True,
    options=("density", "normalize", "seed"),
    mergekit="dare_ties",
)
def dare_ties(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    return _sign_elected_sum(x.theta_pre, x.dropped(), (1.0, *omega), x.options.normalize, out)


def method_named(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise MergeError(f"unknown merge method {name!r}; known: {sorted(METHODS)}") from None
