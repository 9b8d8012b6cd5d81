"""Merges in each matrix's singular basis, beyond mergekit 0.1.5: Task Singular Vectors
(TSV-M; Gargiulo et al., CVPR 2025, arXiv:2412.00081) and isotropic merging (Iso-C, Iso-CTS;
Marczak et al., ICML 2025, arXiv:2502.04959).

The formulas follow the papers' public code (github.com/danielm1405/iso-merging at d34010a,
src/utils/iso.py and src/utils/TSVM_utils.py, which carries TSV-M from the TSV authors): each
2-D tensor's task vectors are decomposed by SVD; every other tensor (biases, norms) takes the
mean of the task vectors, as both papers do. The task vectors here are τ_G and ω_k·τ_k, and the
merged task vector, scaled by `alpha`, is added to θ_pre. A skill at ω_k = 0 is left out (its
SVD would give arbitrary directions), so at ω = 0 TSV-M is θ_G itself.
"""

from __future__ import annotations

import functools

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import MethodFn, register
from mtl.merge.options import Option

ALPHA = Option(
    "alpha",
    float,
    1.0,
    "TSV-M, Iso-C, Iso-CTS: scale of the merged task vector (the papers choose it on held-out "
    "data)",
    low=0,
    low_open=True,
)
COMMON_FRACTION = Option(
    "common_fraction",
    float,
    0.8,
    "Iso-CTS: share of each matrix's rank given to the subspace common to the task vectors "
    "(the rest is split evenly among them)",
    low=0,
    high=1,
)


def one_thread(method: MethodFn) -> MethodFn:
    """`method` run on one CPU thread: the SVD and the products round differently with more
    threads, and one thread makes an in-memory merge (evaluation, at any thread count) equal
    the on-disk one (whose pass runs on one thread) bit for bit."""

    @functools.wraps(method)
    def run(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return method(x, omega, out)
        finally:
            torch.set_num_threads(threads)

    return run


def polar(matrix: torch.Tensor) -> torch.Tensor:
    """The orthonormal factor of `matrix` (U·Vᵀ of its SVD): the nearest matrix with
    orthonormal columns (rows, if it is wide)."""
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    return u @ vh


def _included(x: TensorInputs, omega: tuple[float, ...]) -> list[tuple[int, float]]:
    """(input index, weight) of the task vectors in the merge: τ_G (0) and every skill whose
    ω_k is not 0."""
    return [(0, 1.0), *((k + 1, w) for k, w in enumerate(omega) if w != 0)]


def _task_vectors(x: TensorInputs) -> list[torch.Tensor]:
    return [x.tau_general, *x.tau]


def _mean(x: TensorInputs, included: list[tuple[int, float]]) -> torch.Tensor:
    taus = _task_vectors(x)
    return sum(w * taus[j] for j, w in included) / len(included)


def _svds(x: TensorInputs) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each task vector's thin SVD, once per tensor (ω only scales the singular values)."""
    return x.cached(
        "svds", lambda: [torch.linalg.svd(t, full_matrices=False) for t in _task_vectors(x)]
    )


def tsv_bases(
    svds: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], included: list[int]
) -> tuple[torch.Tensor, torch.Tensor, list[slice]]:
    """TSV-M's orthonormalised bases: each included task vector's top int(r/T) singular
    vectors side by side (r the rank bound, T the task vectors), made orthonormal by their
    polar factors; and the slice of singular values each task fills."""
    u0, _, vh0 = svds[included[0]]
    rank = min(u0.shape[0], vh0.shape[1])
    k = int(rank * (1 / len(included)))
    u = torch.zeros(u0.shape[0], rank, dtype=u0.dtype, device=u0.device)
    vh = torch.zeros(rank, vh0.shape[1], dtype=u0.dtype, device=u0.device)
    slots = [slice(i * k, (i + 1) * k) for i in range(len(included))]
    for slot, j in zip(slots, included, strict=True):
        u[:, slot] = svds[j][0][:, :k]
        vh[slot] = svds[j][2][:k]
    return polar(u), polar(vh), slots


@register(
    "tsv_m",
    formula="θ = θ_pre + α·TSV-M(τ_G, ω_k·τ_k)",
    tag="tsvm",
    label="TSV-M",
    skills_as="tau",
    needs_theta_pre=True,
    options=(ALPHA,),
)
@one_thread
def tsv_m(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    included = _included(x, omega)
    if x.theta_general.dim() != 2:
        return torch.add(x.theta_pre, _mean(x, included), alpha=x.options.alpha, out=out)
    svds = _svds(x)
    indices = [j for j, _ in included]
    # The bases depend on which task vectors take part, not on their weights.
    u, vh, slots = x.cached(f"tsv{indices}", lambda: tsv_bases(svds, indices))
    k = slots[0].stop - slots[0].start
    s = torch.zeros(u.shape[1], dtype=u.dtype, device=u.device)
    for slot, (j, w) in zip(slots, included, strict=True):
        s[slot] = w * svds[j][1][:k]
    return torch.add(x.theta_pre, (u * s) @ vh, alpha=x.options.alpha, out=out)


def iso_c_merge(summed: torch.Tensor) -> torch.Tensor:
    """Iso-C of a matrix: its singular vectors with every singular value their mean."""
    u, s, vh = torch.linalg.svd(summed, full_matrices=False)
    return (u * s.mean()) @ vh


@register(
    "iso_c",
    formula="θ = θ_pre + α·U·mean(σ)·Vᵀ,  UΣVᵀ = τ_G + Σ_k ω_k·τ_k",
    tag="isoc",
    label="Iso-C",
    skills_as="tau",
    needs_theta_pre=True,
    options=(ALPHA,),
)
@one_thread
def iso_c(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    included = _included(x, omega)
    merged = _mean(x, included)
    if merged.dim() == 2:
        merged = iso_c_merge(merged * len(included))
    return torch.add(x.theta_pre, merged, alpha=x.options.alpha, out=out)


def iso_cts_merge(taus: list[torch.Tensor], common_fraction: float) -> torch.Tensor:
    """Iso-CTS of T matrices: the top singular vectors of their sum (the common subspace) and,
    for each, the top ones of what the common subspace leaves of it (its own), side by side,
    made orthonormal, every singular value their mean.

    Of the rank r, the common subspace takes int(r·fraction), moved so the rest divides evenly
    by T (the reference code's rounding)."""
    t = len(taus)
    rank = min(taus[0].shape)
    common = int(rank * common_fraction)
    common = max(0, rank - round((rank - common) / t) * t)
    own = (rank - common) // t
    u, s, vh = torch.linalg.svd(sum(taus), full_matrices=False)
    u_c = u[:, :common]
    us, ss, vhs = [], [], []
    for tau in taus:
        residual = tau - u_c @ (u_c.T @ tau)
        u_t, s_t, vh_t = torch.linalg.svd(residual, full_matrices=False)
        us.append(u_t[:, :own])
        ss.append(s_t[:own])
        vhs.append(vh_t[:own])
    basis_u = polar(torch.cat([*us, u_c], dim=1))
    basis_vh = polar(torch.cat([*vhs, vh[:common]], dim=0))
    sigma = torch.cat([*ss, s[:common]]).mean()
    return (basis_u * sigma) @ basis_vh


@register(
    "iso_cts",
    formula="θ = θ_pre + α·Iso-CTS(τ_G, ω_k·τ_k)",
    tag="isocts",
    label="Iso-CTS",
    skills_as="tau",
    needs_theta_pre=True,
    options=(ALPHA, COMMON_FRACTION),
)
@one_thread
def iso_cts(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    included = _included(x, omega)
    if x.theta_general.dim() != 2:
        return torch.add(x.theta_pre, _mean(x, included), alpha=x.options.alpha, out=out)
    taus = _task_vectors(x)
    weighted = [w * taus[j] for j, w in included]
    merged = iso_cts_merge(weighted, x.options.common_fraction)
    return torch.add(x.theta_pre, merged, alpha=x.options.alpha, out=out)
