"""Model Breadcrumbs (Davari & Belilovsky, ECCV 2024, arXiv:2312.06795), with and without TIES'
sign election, as mergekit 0.1.5 computes them (`breadcrumbs`, `breadcrumbs_ties`)."""

from __future__ import annotations

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import Mergekit, register
from mtl.merge.methods.ties_dare import DENSITY, NORMALIZE, sign_elected_sum
from mtl.merge.options import Option

GAMMA = Option(
    "gamma",
    float,
    0.01,
    "Model Breadcrumbs: fraction of each task vector's largest-magnitude entries dropped as "
    "outliers (fewer where `density` needs them)",
    low=0,
    high=1,
)


def crumbs(tau: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """τ without its largest `gamma` and its smallest entries by magnitude: `density` of it
    kept, the entries ranked just below the outliers (as mergekit's `magnitude_outliers`).

    With n entries, int(density·n) are kept and int(gamma·n) outliers dropped, fewer outliers
    where too few entries would remain. The kept band lies between two order statistics,
    found by selection rather than a sort; entries tied with a bound are all kept (mergekit's
    sort keeps an arbitrary subset of ties, which float32 noise does not have).
    """
    if density >= 1:
        return tau
    n = tau.numel()
    keep = int(density * n)
    if keep == 0:
        return torch.zeros_like(tau)
    bottom = max(0, n - keep - int(gamma * n))
    magnitude = tau.abs()
    flat = magnitude.flatten()
    low = flat.kthvalue(bottom + 1).values
    high = flat.kthvalue(bottom + keep).values
    return torch.where((magnitude >= low) & (magnitude <= high), tau, 0.0)


def _crumbed(x: TensorInputs) -> list[torch.Tensor]:
    """[τ_G, τ_1, …] after crumbs(), once per tensor."""
    density, gamma = x.options.density, x.options.gamma
    return x.cached("crumbs", lambda: [crumbs(t, density, gamma) for t in (x.tau_general, *x.tau)])


@register(
    "breadcrumbs",
    formula="θ = θ_pre + crumbs(τ_G) + Σ_k ω_k·crumbs(τ_k)",
    tag="crumbs",
    label="Breadcrumbs",
    skills_as="tau",
    needs_theta_pre=True,
    options=(DENSITY, GAMMA),
    mergekit=Mergekit(
        "breadcrumbs", model_options=("density", "gamma"), fixed={"normalize": False}
    ),
)
def breadcrumbs(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    crumbed = _crumbed(x)
    torch.add(x.theta_pre, crumbed[0], out=out)
    for w, tau in zip(omega, crumbed[1:], strict=True):
        out.add_(tau, alpha=w)
    return out


@register(
    "breadcrumbs_ties",
    formula="θ = θ_pre + elect(crumbs(τ_G), ω_k·crumbs(τ_k))",
    tag="crumbsties",
    label="Breadcrumbs-TIES",
    skills_as="tau",
    needs_theta_pre=True,
    options=(DENSITY, GAMMA, NORMALIZE),
    mergekit=Mergekit(
        "breadcrumbs_ties",
        model_options=("density", "gamma"),
        global_options=("normalize",),
    ),
)
def breadcrumbs_ties(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    return sign_elected_sum(x.theta_pre, _crumbed(x), (1.0, *omega), x.options.normalize, out)
