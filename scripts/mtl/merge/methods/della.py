"""DELLA (Deep et al. 2024, arXiv:2406.11617): each task vector entry kept with a probability
that grows with its magnitude rank (MAGPRUNE), with and without TIES' sign election, as mergekit
0.1.5's `della` and `della_linear` (rescaled to the task vector's L1 norm)."""

from __future__ import annotations

import torch

from mtl.merge.inputs import TensorInputs, mask_seed
from mtl.merge.methods import Mergekit, register
from mtl.merge.methods.ties_dare import DENSITY, NORMALIZE, SEED, sign_elected_sum
from mtl.merge.options import MergeError, Option

EPSILON = Option(
    "epsilon",
    float,
    0.15,
    "DELLA: keep probabilities run from density − epsilon (smallest entry of a row) to "
    "density + epsilon (largest)",
    low=0,
    high=1,
)


def magprune(tau: torch.Tensor, density: float, epsilon: float, seed: int) -> torch.Tensor:
    """MAGPRUNE: along each row (a 1-D tensor is one row), the entry of magnitude rank r of n
    (0 = smallest) is kept with probability density − ε + 2ε·r/(n − 1); the survivors are
    scaled so the tensor keeps its L1 norm (mergekit's `rescale`).

    The mask comes from a CPU generator seeded by `seed`, so a merge is reproducible; mergekit
    draws from torch's global generator instead. A one-entry row has probability density − ε.
    """
    if density >= 1:
        return tau
    if not (density - epsilon > 0 and density + epsilon < 1):
        raise MergeError(
            f"options density={density} and epsilon={epsilon}: DELLA needs density ± epsilon "
            "within (0, 1)"
        )
    rows = tau if tau.dim() >= 2 else tau.unsqueeze(0)
    n = rows.shape[1]
    ranks = rows.abs().argsort(dim=1).argsort(dim=1).to(torch.float32)
    spread = ranks / (n - 1) if n > 1 else torch.zeros_like(ranks)
    probability = (density - epsilon) + spread * (2 * epsilon)
    draw = torch.rand(rows.shape, generator=torch.Generator().manual_seed(seed))
    kept = torch.where(draw.to(rows.device) < probability, rows, 0.0)
    before, after = rows.abs().sum(), kept.abs().sum()
    if before >= 1e-7 and after >= 1e-7:
        kept = kept * (before / after)
    return kept.reshape(tau.shape)


def _pruned(x: TensorInputs) -> list[torch.Tensor]:
    """[τ_G, τ_1, …] after magprune(), once per tensor, each with its own mask."""
    density, epsilon, seed = x.options.density, x.options.epsilon, x.options.seed
    return x.cached(
        "magprune",
        lambda: [
            magprune(t, density, epsilon, mask_seed(seed, x.name, j))
            for j, t in enumerate((x.tau_general, *x.tau))
        ],
    )


_NOTE = (
    "Not bit-identical: mergekit draws unseeded DELLA masks; mtl.merge draws them from a "
    "generator seeded per tensor and input (the same keep probabilities and rescaling)."
)


@register(
    "della",
    formula="θ = θ_pre + elect(magprune(τ_G), ω_k·magprune(τ_k))",
    tag="della",
    label="DELLA",
    skills_as="tau",
    needs_theta_pre=True,
    options=(DENSITY, EPSILON, NORMALIZE, SEED),
    mergekit=Mergekit(
        "della",
        model_options=("density", "epsilon"),
        global_options=("normalize",),
        fixed={"rescale": True},
        note=_NOTE,
    ),
)
def della(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    return sign_elected_sum(x.theta_pre, _pruned(x), (1.0, *omega), x.options.normalize, out)


@register(
    "della_linear",
    formula="θ = θ_pre + magprune(τ_G) + Σ_k ω_k·magprune(τ_k)",
    tag="dellalinear",
    label="DELLA-linear",
    skills_as="tau",
    needs_theta_pre=True,
    options=(DENSITY, EPSILON, SEED),
    mergekit=Mergekit(
        "della_linear",
        model_options=("density", "epsilon"),
        fixed={"normalize": False, "rescale": True},
        note=_NOTE,
    ),
)
def della_linear(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    pruned = _pruned(x)
    torch.add(x.theta_pre, pruned[0], out=out)
    for w, tau in zip(omega, pruned[1:], strict=True):
        out.add_(tau, alpha=w)
    return out
