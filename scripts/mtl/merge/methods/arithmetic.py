"""Weighted sums: task arithmetic (Ilharco et al. 2023), linear interpolation and WiSE-FT
(Wortsman et al. 2022) with its two endpoints."""

from __future__ import annotations

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import Mergekit, register

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


# θ_G takes weight 1 (task arithmetic) or 1 − Σω (linear) itself: mergekit must not rescale.
_UNNORMALIZED = {"normalize": False}


@register(
    "task_arithmetic",
    formula="θ = θ_G + Σ_k ω_k·τ_k",
    tag="ta",
    label="Task arithmetic",
    skills_as="tau",
    mergekit=Mergekit("task_arithmetic", fixed=_UNNORMALIZED),
    elementwise=True,
    bound=_task_arithmetic_bound,
)
def task_arithmetic(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    torch.add(x.theta_general, x.tau[0], alpha=omega[0], out=out)
    for w, tau in zip(omega[1:], x.tau[1:], strict=True):
        out.add_(tau, alpha=w)
    return out


@register(
    "wise_ft_match",
    formula="θ = (1 − ω)·θ_G + ω·θ_CFT-match   (θ_G continued on D plus as many G examples)",
    tag="wiseftmatch",
    label="WiSE-FT (matched G)",
    skills_from="general_match",
    skills_as="theta",
    mergekit=Mergekit("linear", fixed=_UNNORMALIZED),
    elementwise=True,
    bound=_linear_bound,
)
@register(
    "wise_ft",
    formula="θ = (1 − ω)·θ_G + ω·θ_CFT   (θ_CFT: θ_G continued on skill D)",
    tag="wiseft",
    label="WiSE-FT",
    skills_from="general",
    skills_as="theta",
    mergekit=Mergekit("linear", fixed=_UNNORMALIZED),
    elementwise=True,
    bound=_linear_bound,
)
@register(
    "linear",
    formula="θ = (1 − Σ_k ω_k)·θ_G + Σ_k ω_k·θ_k",
    tag="linear",
    label="Linear",
    skills_as="theta",
    mergekit=Mergekit("linear", fixed=_UNNORMALIZED),
    elementwise=True,
    bound=_linear_bound,
)
def linear(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    """Linear interpolation. WiSE-FT is the same merge of an endpoint trained from θ_G (so θ_pre
    plays no part); its two registrations differ in that endpoint's training only (the paper's
    Figure 2 compares them)."""
    torch.mul(x.theta_general, 1.0 - sum(omega), out=out)
    for w, theta in zip(omega, x.theta, strict=True):
        out.add_(theta, alpha=w)
    return out
