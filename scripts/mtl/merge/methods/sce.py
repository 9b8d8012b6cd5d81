"""SCE (Wan et al. 2024, FuseChat, arXiv:2408.07990): select the entries where the task vectors
vary most, weigh each task vector by its mean square, erase minority signs, as mergekit 0.1.5's
`sce`. mergekit weighs no model, so here the skills' task vectors are ω_k·τ_k (τ_G as is)."""

from __future__ import annotations

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import Mergekit, register
from mtl.merge.options import Option

SELECT_TOPK = Option(
    "select_topk",
    float,
    1.0,
    "SCE: fraction of the entries (of those that vary at all) kept, by their variance across "
    "the task vectors",
    low=0,
    high=1,
    low_open=True,
)


def sce(deltas: torch.Tensor, select_topk: float) -> torch.Tensor:
    """The SCE merge of the stacked task vectors `deltas` (inputs × tensor shape)."""
    if select_topk < 1:
        variance = deltas.var(dim=0, unbiased=False)
        k = int(torch.count_nonzero(variance).item() * select_topk)
        selected = torch.zeros(variance.numel(), dtype=deltas.dtype, device=deltas.device)
        if k > 0:
            selected[variance.abs().flatten().topk(k).indices] = 1
        deltas = deltas * selected.view(variance.shape)
    majority = torch.where(deltas.sum(dim=0) >= 0, 1.0, -1.0)
    agree = (deltas.sign() == majority).to(deltas.dtype)
    energy = deltas.square().flatten(1).mean(dim=1)
    total = energy.sum().item()
    weights = energy / total if abs(total) >= 1e-6 else torch.full_like(energy, 1 / len(energy))
    erased = weights.view(-1, *[1] * (deltas.dim() - 1)) * agree
    return (deltas * erased).sum(dim=0) / erased.sum(dim=0).clamp(min=1e-6)


@register(
    "sce",
    formula="θ = θ_pre + SCE(τ_G, ω_k·τ_k)",
    tag="sce",
    label="SCE",
    skills_as="tau",
    needs_theta_pre=True,
    options=(SELECT_TOPK,),
    mergekit=Mergekit("sce", global_options=("select_topk",), weighted=False),
)
def sce_method(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    deltas = torch.stack([x.tau_general, *(w * tau for w, tau in zip(omega, x.tau, strict=True))])
    return torch.add(x.theta_pre, sce(deltas, x.options.select_topk), out=out)
