"""The Karcher (Riemannian) mean of the models on the unit sphere, as mergekit 0.1.5's `karcher`:
each tensor's direction is the weighted Karcher mean of the models' directions, its length the
weighted mean of their lengths. mergekit weighs the models equally; here θ_G has weight 1 and
θ_k weight ω_k (normalised), so at ω = 1 with one skill it is mergekit's, and at ω = 0 θ_G."""

from __future__ import annotations

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import Mergekit, register

_ITERATIONS = 10  # mergekit's defaults
_TOLERANCE = 1e-5


def karcher_mean(tensors: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Σ w·‖t‖ times the unit vector m minimising Σ w·angle(m, t/‖t‖)², found by Riemannian
    gradient steps from the normalised weighted sum of the directions; tensors shorter than the
    tolerance take no part in the direction."""
    norms = [t.norm() for t in tensors]
    kept = [(w, t / n) for w, t, n in zip(weights, tensors, norms, strict=True) if n > _TOLERANCE]
    scale = sum(w * n for w, n in zip(weights, norms, strict=True))
    if not kept:
        return torch.zeros_like(tensors[0])
    total = sum(w for w, _ in kept)
    kept = [(w / total, unit) for w, unit in kept]
    mean = sum(w * unit for w, unit in kept)
    length = mean.norm()
    mean = kept[0][1].clone() if length < _TOLERANCE else mean / length
    for _ in range(_ITERATIONS):
        step = torch.zeros_like(mean)
        for w, unit in kept:
            cos = torch.clamp(mean.flatten().dot(unit.flatten()), -1.0, 1.0)
            angle = torch.arccos(cos)
            if angle < _TOLERANCE:
                continue
            step += w * (angle / torch.sin(angle)) * (unit - cos * mean)
        size = step.norm()
        if size < _TOLERANCE:
            break
        mean = torch.cos(size) * mean + torch.sin(size) * (step / size)
        length = mean.norm()
        if length > _TOLERANCE:
            mean = mean / length
    return scale * mean


@register(
    "karcher",
    formula="θ = Karcher mean of (θ_G, θ_k) with weights ∝ (1, ω_k)",
    tag="karcher",
    label="Karcher mean",
    skills_as="theta",
    mergekit=Mergekit("karcher", weighted=False),
)
def karcher(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    total = 1.0 + sum(omega)
    weights = [1.0 / total, *(w / total for w in omega)]
    return out.copy_(karcher_mean([x.theta_general, *x.theta], weights))
