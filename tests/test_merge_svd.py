"""TSV-M, Iso-C and Iso-CTS against the papers' formulas, on small cases computed by hand in the
comments (and, for the orthonormalisation, against the polar factor computed another way)."""

from __future__ import annotations

import pytest
import torch

from mtl.merge import METHODS, TensorInputs
from mtl.merge.methods.svd import iso_cts_merge, polar


def _merge(method: str, general: torch.Tensor, skills: list[torch.Tensor],
           omega: tuple[float, ...], **options: float) -> torch.Tensor:
    """The method's merge with θ_pre = 0, so τ_G = θ_G."""
    x = TensorInputs.from_tensors("w", theta_general=general, theta_pre=torch.zeros_like(general),
                                  tau=skills, options=options)
    return METHODS[method](x, omega, torch.empty_like(general))


def diag(*values: float) -> torch.Tensor:
    return torch.diag(torch.tensor(values, dtype=torch.float32))


def test_tsv_m_keeps_each_task_vectors_top_singular_vectors() -> None:
    # T = 2 task vectors of rank bound 2: each gives its top int(2/2) = 1 singular triple.
    # τ_G = diag(3, 1): (e1, 3, e1); ω·τ_1 with τ_1 = diag(0, 2), ω = 2: (e2, 4, e2). The bases
    # [e1 e2] are orthonormal already, so TSV-M = diag(3, 4); τ_G's second direction is gone.
    assert torch.allclose(_merge("tsv_m", diag(3, 1), [diag(0, 2)], (2.0,)), diag(3, 4))
    # A skill at ω = 0 is left out: T = 1, τ_G keeps its whole rank and θ = θ_G.
    assert torch.allclose(_merge("tsv_m", diag(3, 1), [diag(0, 2)], (0.0,)), diag(3, 1))
    # alpha scales the merged task vector.
    assert torch.allclose(_merge("tsv_m", diag(3, 1), [diag(0, 2)], (2.0,), alpha=0.5),
                          diag(1.5, 2))
    # 1-D tensors: the mean of the task vectors, (τ_G + ω·τ_1)/2.
    one_d = _merge("tsv_m", torch.tensor([1.0, 2.0]), [torch.tensor([3.0, 0.0])], (1.0,))
    assert torch.allclose(one_d, torch.tensor([2.0, 1.0]))


def _polar_by_eigh(m: torch.Tensor) -> torch.Tensor:
    """M·(MᵀM)^(-1/2), for M of full column rank."""
    values, vectors = torch.linalg.eigh(m.T @ m)
    return m @ vectors @ torch.diag(values.rsqrt()) @ vectors.T


def test_tsv_m_orthonormalises_overlapping_singular_vectors() -> None:
    # τ_G = u_G·v_Gᵀ and τ_1 = 2·u_1·v_1ᵀ with u_G = e1, u_1 = (e1 + e2)/√2, v_G = e1,
    # v_1 = (0.6, 0.8): neither pair is orthogonal, so TSV-M puts σ = (1, 2) on the polar
    # factors of [u_G u_1] and [v_G v_1].
    c = 2**-0.5
    u = torch.tensor([[1.0, c], [0.0, c]])
    v = torch.tensor([[1.0, 0.6], [0.0, 0.8]])
    tau_g = torch.outer(u[:, 0], v[:, 0])
    tau_1 = 2 * torch.outer(u[:, 1], v[:, 1])
    expected = _polar_by_eigh(u) @ diag(1, 2) @ _polar_by_eigh(v).T
    assert torch.allclose(_merge("tsv_m", tau_g, [tau_1], (1.0,)), expected, atol=1e-6)
    assert torch.allclose(polar(u), _polar_by_eigh(u), atol=1e-6)


def test_iso_c_flattens_the_spectrum_of_the_sum() -> None:
    # τ_G + τ_1 = diag(3, 2): singular values 3 and 2, their mean 2.5 on both directions.
    assert torch.allclose(_merge("iso_c", diag(3, 1), [diag(0, 1)], (1.0,)), 2.5 * torch.eye(2))
    # A rotated case: Q·diag(3, 1)·Qᵀ keeps Q's directions, each at 2.
    q = torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    general = q @ diag(3, 1) @ q.T
    merged = _merge("iso_c", general, [torch.zeros(2, 2)], (1.0,))
    assert torch.allclose(merged, 2 * q @ q.T, atol=1e-6)
    # 1-D tensors: the mean.
    one_d = _merge("iso_c", torch.tensor([1.0, 2.0]), [torch.tensor([3.0, 0.0])], (1.0,))
    assert torch.allclose(one_d, torch.tensor([2.0, 1.0]))


def test_iso_cts_gives_each_task_its_own_directions() -> None:
    # r = 4, T = 2, common_fraction 0.5: 2 common directions, 1 of each task's own.
    # τ_G = diag(4, 0, 2, 1), τ_1 = diag(0, 3, 0, 1.5); the sum diag(4, 3, 2, 2.5) puts e1, e2
    # in the common subspace (σ 4, 3). What it leaves of τ_G is diag(0, 0, 2, 1): its own
    # direction e3 (σ 2); of τ_1 diag(0, 0, 0, 1.5): e4 (σ 1.5). All four directions, at the
    # mean of (2, 1.5, 4, 3) = 2.625 — where Iso-C takes the sum's mean, (4+3+2.5+2)/4 = 2.875.
    general, skill = diag(4, 0, 2, 1), diag(0, 3, 0, 1.5)
    cts = _merge("iso_cts", general, [skill], (1.0,), common_fraction=0.5)
    assert torch.allclose(cts, 2.625 * torch.eye(4), atol=1e-6)
    assert torch.allclose(_merge("iso_c", general, [skill], (1.0,)), 2.875 * torch.eye(4))


def test_iso_cts_own_directions_come_from_outside_the_common_subspace() -> None:
    # In 3-D with one common direction (fraction 1/3: int(3/3) = 1, then 3 − round(2/2)·2 = 1)
    # τ_A = 5·e1e1ᵀ + 1·e2e2ᵀ and τ_B = 4·e1e1ᵀ + 2·e3e3ᵀ: the common direction is e1 (σ 9),
    # A's own e2 (σ 1), B's own e3 (σ 2); the mean of (1, 2, 9) is 4.
    tau_a, tau_b = diag(5, 1, 0), diag(4, 0, 2)
    assert torch.allclose(iso_cts_merge([tau_a, tau_b], 1 / 3), 4 * torch.eye(3), atol=1e-6)
    # The own directions are orthogonal to the common one whatever the inputs.
    generator = torch.Generator().manual_seed(0)
    taus = [torch.randn(6, 4, generator=generator) for _ in range(2)]
    merged = iso_cts_merge(taus, 0.5)
    singular = torch.linalg.svdvals(merged)
    assert torch.allclose(singular, singular.mean().expand(4), rtol=1e-4)  # isotropic


@pytest.mark.parametrize("method", ["tsv_m", "iso_c", "iso_cts"])
def test_svd_methods_are_their_task_vectors_at_one_task(method: str) -> None:
    """With one task vector of isotropic spectrum (a scaled rotation), every method returns
    it: TSV-M keeps its whole rank, Iso-C and Iso-CTS find its spectrum flat already."""
    q = torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    assert torch.allclose(_merge(method, 3 * q, [torch.ones(2, 2)], (0.0,)), 3 * q, atol=1e-6)
