"""Spherical interpolation of task vectors: NuSLERP with a base model, as mergekit 0.1.5's
`nuslerp` (Shoemake 1985's SLERP between τ_G and τ_D, each tensor flattened)."""

from __future__ import annotations

import math

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import Mergekit, register

# Below this (1 − cos²) the two directions are one and SLERP is the straight line.
_COLINEAR = 1e-16


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """The point at fraction t of the great-circle arc from v0 to v1 (as flat vectors), with
    their lengths interpolated along: sin((1−t)Ω)/sin Ω·v0 + sin(tΩ)/sin Ω·v1, Ω the angle
    between them; (1−t)·v0 + t·v1 where they are colinear (or one is zero)."""
    a, b = v0.flatten(), v1.flatten()
    cos = (a / a.norm().clamp(min=1e-7)).dot(b / b.norm().clamp(min=1e-7)).clamp(-1, 1).item()
    if 1 - cos * cos <= _COLINEAR:
        return (1 - t) * v0 + t * v1
    angle = math.acos(cos)
    return (math.sin((1 - t) * angle) * v0 + math.sin(t * angle) * v1) / math.sin(angle)


@register(
    "nuslerp",
    formula="θ = θ_pre + slerp(ω/(1 + ω), τ_G, τ_D)",
    tag="nuslerp",
    label="NuSLERP",
    skills_as="tau",
    needs_theta_pre=True,
    n_skills=1,
    mergekit=Mergekit("nuslerp"),
)
def nuslerp(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    """θ_G and θ_D enter with weights 1 and ω, so the arc's fraction is ω/(1 + ω): ω = 0 is θ_G,
    ω = 1 halfway, ω → ∞ θ_D (mergekit takes the midpoint where the weights sum to 0)."""
    (w,) = omega
    t = 0.5 if abs(1 + w) < 1e-6 else w / (1 + w)
    return torch.add(x.theta_pre, slerp(t, x.tau_general, x.tau[0]), out=out)
