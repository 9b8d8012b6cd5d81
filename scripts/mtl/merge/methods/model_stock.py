"""Model Stock (Jang et al., ECCV 2024, arXiv:2403.19522), as mergekit 0.1.5's `model_stock`:
the finetuned models' average pulled toward θ_pre by a ratio from the angle between their task
vectors. mergekit weighs no model, so here the skills' task vectors are ω_k·τ_k (τ_G as is)."""

from __future__ import annotations

import itertools

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import Mergekit, register


def stock_ratio(deltas: list[torch.Tensor]) -> float:
    """t = N·cos/(1 + (N − 1)·cos), cos the mean cosine between pairs of the N task vectors
    (each flattened); 0 where the denominator vanishes (no finite estimate: keep θ_pre)."""
    cosines = []
    for a, b in itertools.combinations([d.flatten() for d in deltas], 2):
        norms = (a.norm() * b.norm()).clamp(min=1e-6)
        cosines.append((a.dot(b) / norms).clamp(-1, 1).item())
    cos = sum(cosines) / len(cosines)
    n = len(deltas)
    denominator = 1 + (n - 1) * cos
    return 0.0 if abs(denominator) < 1e-6 else n * cos / denominator


@register(
    "model_stock",
    formula="θ = θ_pre + t·mean(τ_G, ω_k·τ_k), t = N·cos/(1 + (N − 1)·cos)",
    tag="stock",
    label="Model Stock",
    skills_as="tau",
    needs_theta_pre=True,
    mergekit=Mergekit("model_stock", weighted=False),
)
def model_stock(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    deltas = [x.tau_general, *(w * tau for w, tau in zip(omega, x.tau, strict=True))]
    t = stock_ratio(deltas)
    mean = torch.stack(deltas).mean(dim=0)
    return torch.add(x.theta_pre, mean, alpha=t, out=out)
