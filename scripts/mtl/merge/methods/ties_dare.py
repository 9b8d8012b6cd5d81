"""TIES (Yadav et al. 2023), DARE (Yu et al. 2024) and DARE-TIES, as mergekit 0.1.5 computes
them; the options and the sign election they share with the other sparsifying methods."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import Mergekit, register
from mtl.merge.options import Option

DENSITY = Option(
    "density",
    float,
    0.5,
    "fraction of each task vector kept (DARE: p = 1 − density)",
    low=0,
    high=1,
    low_open=True,
)
NORMALIZE = Option(
    "normalize",
    bool,
    False,
    "sign-elected methods: divide by the summed weights of the entries that survive the "
    "election (mergekit's `normalize`); off, as the paper's task-arithmetic recipe, so θ_G "
    "keeps weight 1",
)
SEED = Option("seed", int, 0, "random methods: seed of the drop masks (the workflow's seed)")


def sign_elected_sum(
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


@register(
    "ties",
    formula="θ = θ_pre + elect(trim(τ_G), ω_k·trim(τ_k))",
    tag="ties",
    label="TIES",
    skills_as="tau",
    needs_theta_pre=True,
    options=(DENSITY, NORMALIZE),
    mergekit=Mergekit("ties", model_options=("density",), global_options=("normalize",)),
)
def ties(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    return sign_elected_sum(x.theta_pre, x.trimmed(), (1.0, *omega), x.options.normalize, out)


_DARE_NOTE = (
    "Not bit-identical: mergekit draws unseeded DARE masks and rescales survivors "
    "to keep the L1 norm; mtl.merge uses seeded masks and the paper's 1/(1-p)."
)


@register(
    "dare",
    formula="θ = θ_pre + drop(τ_G) + Σ_k ω_k·drop(τ_k)",
    tag="dare",
    label="DARE",
    skills_as="tau",
    needs_theta_pre=True,
    options=(DENSITY, SEED),
    mergekit=Mergekit(
        "dare_linear",
        model_options=("density",),
        fixed={"normalize": False, "rescale": True},
        note=_DARE_NOTE,
    ),
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
    label="DARE-TIES",
    skills_as="tau",
    needs_theta_pre=True,
    options=(DENSITY, NORMALIZE, SEED),
    mergekit=Mergekit(
        "dare_ties",
        model_options=("density",),
        global_options=("normalize",),
        fixed={"normalize": False, "rescale": True},
        note=_DARE_NOTE,
    ),
)
def dare_ties(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    return sign_elected_sum(x.theta_pre, x.dropped(), (1.0, *omega), x.options.normalize, out)
