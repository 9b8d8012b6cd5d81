"""mergekit's other task-vector methods in the engine, against mergekit 0.1.5 on the same files:
Model Breadcrumbs (± TIES), NuSLERP with a base, SCE and Model Stock bit for bit (to float32
rounding); DELLA (± linear), whose masks are random, by their distribution.

mergekit runs in-process on the mergekit_config.yml each of our outputs carries, so the same
run checks the configs. SCE and Model Stock weigh no model in mergekit, so they are compared at
ω = 1, where ours (τ_k scaled by ω_k) is mergekit's; other ω are checked against the formula.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from mtl.merge import METHODS, MergeError, TensorInputs, extract_task_vector, merge_to_disk
from mtl.merge.methods.breadcrumbs import crumbs
from mtl.merge.methods.della import magprune
from mtl.merge.methods.interpolation import slerp
from mtl.merge.methods.karcher import karcher_mean
from mtl.merge.methods.model_stock import stock_ratio
from mtl.merge.methods.sce import sce

QUIET = {"progress": False}
TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=64,
    tie_word_embeddings=False,
    vocab_size=64,
)
pytestmark = pytest.mark.filterwarnings("ignore:numpy.core is deprecated:DeprecationWarning")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """θ_pre; θ_G; θ_D1, θ_D2; θ_G = θ_pre (`flat`, to isolate a skill's DELLA mask); τ_1, τ_2."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    pre = LlamaForCausalLM(LlamaConfig(**TINY)).state_dict()

    def save(name: str, seed: int | None) -> Path:
        state = pre
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
            state = {k: v + 0.01 * torch.randn(v.shape, generator=generator)
                     for k, v in pre.items()}
        model = LlamaForCausalLM(LlamaConfig(**TINY))
        model.load_state_dict(state)
        model.save_pretrained(root / name)
        return root / name

    paths = {"pre": save("pre", None), "general": save("general", 1), "flat": save("flat", None)}
    paths |= {"d1": save("d1", 2), "d2": save("d2", 3)}
    for k in (1, 2):
        paths[f"tv{k}"] = root / f"tv{k}.safetensors"
        extract_task_vector(paths["pre"], paths[f"d{k}"], paths[f"tv{k}"], progress=False)
    return paths


# (method, settings, task vectors, options)
CASES = {
    "breadcrumbs": ("breadcrumbs", [0.0, 0.4, 1.0], ["tv1"], {"density": 0.6, "gamma": 0.05}),
    "breadcrumbs_2skills": ("breadcrumbs", [(0.3, 0.7)], ["tv1", "tv2"], {"density": 0.8}),
    "breadcrumbs_ties": ("breadcrumbs_ties", [0.5, 1.0], ["tv1"], {"density": 0.5, "gamma": 0.1}),
    "breadcrumbs_ties_norm": (
        "breadcrumbs_ties",
        [(0.4, 0.8)],
        ["tv1", "tv2"],
        {"density": 0.7, "normalize": True},
    ),
    "nuslerp": ("nuslerp", [0.0, 0.3, 1.0, 2.5], ["tv1"], {}),
    "sce": ("sce", [1.0], ["tv1"], {}),
    "sce_topk_2skills": ("sce", [(1.0, 1.0)], ["tv1", "tv2"], {"select_topk": 0.3}),
    "model_stock": ("model_stock", [1.0], ["tv1"], {}),
    "model_stock_2skills": ("model_stock", [(1.0, 1.0)], ["tv1", "tv2"], {}),
    "karcher": ("karcher", [1.0], ["tv1"], {}),
}


def _merge(models: dict[str, Path], root: Path, case: str, general: str = "general") -> list:
    method, settings, tvs, options = CASES[case] if case in CASES else DELLA[case]
    return merge_to_disk(
        method,
        models[general],
        settings,
        [root / f"{case}-{i}" for i in range(len(settings))],
        theta_pre=models["pre"],
        task_vectors=[models[t] for t in tvs],
        options={**options, **QUIET},
    )


def _mergekit(recipe_dir: Path, out: Path) -> dict[str, torch.Tensor]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    recipe = yaml.safe_load((recipe_dir / "mergekit_config.yml").read_text())
    options = MergeOptions(allow_crimes=True, copy_tokenizer=False, quiet=True,
                           write_model_card=False)
    run_merge(MergeConfiguration.model_validate(recipe), str(out), options)
    return _weights(out)


@pytest.mark.parametrize("case", CASES)
def test_matches_mergekit(case: str, models: dict[str, Path], tmp_path: Path) -> None:
    general = _weights(models["general"])
    for result in _merge(models, tmp_path, case):
        ours = _weights(Path(result["path"]))
        theirs = _mergekit(Path(result["path"]), tmp_path / "mergekit" / Path(result["path"]).name)
        assert ours.keys() == theirs.keys()
        for name, tensor in ours.items():
            assert (tensor - theirs[name]).abs().max().item() <= 1e-6, (case, name)
    # The last output (ω > 0) is a merge, not θ_G again.
    assert any(not torch.equal(t, general[name]) for name, t in ours.items())


def test_unweighted_methods_write_a_mergekit_config_only_at_omega_one(
    models: dict[str, Path], tmp_path: Path
) -> None:
    for method in ("sce", "model_stock", "karcher"):
        one, half = merge_to_disk(
            method,
            models["general"],
            [1.0, 0.5],
            [tmp_path / f"{method}-1", tmp_path / f"{method}-half"],
            theta_pre=models["pre"],
            task_vectors=[models["tv1"]],
            options=QUIET,
        )
        assert (Path(one["path"]) / "mergekit_config.yml").exists()
        assert not (Path(half["path"]) / "mergekit_config.yml").exists()
        assert "ω is not 1" in (Path(half["path"]) / "README.md").read_text()


# ---- DELLA: random masks, compared by distribution -------------------------------------------
# mergekit draws DELLA's masks from torch's global generator, in the order its task scheduler
# reaches the tensors, so no seed of ours gives its masks. With θ_G = θ_pre (τ_G = 0) a
# della_linear output is θ_pre + ω·s·(m ⊙ τ_D): per tensor, the kept entries (m) and one scale
# s = ‖τ_D‖₁/‖m ⊙ τ_D‖₁. Both are compared: the share kept in each fifth of a row's magnitude
# ranks (keep probability density − ε + 2ε·rank/(n − 1)) and s.

DELLA = {
    "della_linear": ("della_linear", [0.5], ["tv1"], {"density": 0.5, "epsilon": 0.3}),
    "della": ("della", [0.5], ["tv1"], {"density": 0.5, "epsilon": 0.3}),
}
MATRICES = ["model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight", "lm_head.weight"]


def _kept_by_rank(tau: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The share of entries kept in each fifth of the rows' magnitude ranks."""
    ranks = tau.abs().argsort(dim=1).argsort(dim=1)
    fifth = (ranks * 5) // tau.shape[1]
    return torch.stack([kept[fifth == q].float().mean() for q in range(5)])


@pytest.mark.parametrize("case", DELLA)
def test_della_masks_match_mergekit_in_distribution(
    case: str, models: dict[str, Path], tmp_path: Path
) -> None:
    (result,) = _merge(models, tmp_path, case, general="flat")
    folder = Path(result["path"])
    ours, theirs = _weights(folder), _mergekit(folder, tmp_path / "mergekit")
    pre, tau = _weights(models["pre"]), load_file(models["tv1"])
    _, (w,), _, options = DELLA[case]
    expected = options["density"] + options["epsilon"] * torch.linspace(-0.8, 0.8, 5)
    for name in MATRICES:
        shares, scales = [], []
        for merged in (ours[name], theirs[name]):
            delta = merged - pre[name]
            kept = delta != 0
            shares.append(_kept_by_rank(tau[name], kept))
            scales.append((delta[kept] / (w * tau[name][kept])).median().item())
        # 2048-4096 entries a matrix: a fifth's share has a standard error below 0.025.
        assert (shares[0] - expected).abs().max() < 0.1, (name, shares[0], expected)
        assert (shares[0] - shares[1]).abs().max() < 0.12, (name, shares)
        assert scales[0] == pytest.approx(scales[1], rel=0.08), (name, scales)


def test_della_masks_are_seeded_per_tensor_and_input() -> None:
    tau = torch.randn(40, 50, generator=torch.Generator().manual_seed(0))
    a, b = magprune(tau, 0.5, 0.2, seed=7), magprune(tau, 0.5, 0.2, seed=7)
    assert torch.equal(a, b) and not torch.equal(a != 0, magprune(tau, 0.5, 0.2, seed=8) != 0)
    kept = a != 0
    assert torch.allclose(a[kept] / tau[kept], (tau.abs().sum() / tau[kept].abs().sum()).expand(
        int(kept.sum())))
    with pytest.raises(MergeError, match="density ± epsilon"):
        magprune(tau, 0.5, 0.5, seed=0)


# ---- formulas on hand-computed cases ---------------------------------------------------------


def test_crumbs_drop_the_outliers_then_the_smallest() -> None:
    tau = torch.tensor([0.1, -0.9, 0.3, -0.5, 0.7, 0.2, -0.4, 0.6, 0.8, -1.0])
    # n = 10: keep int(0.5·10) = 5, drop int(0.2·10) = 2 outliers (1.0, 0.9) and the 3 smallest.
    expected = torch.tensor([0, 0, 0, -0.5, 0.7, 0, -0.4, 0.6, 0.8, 0])
    assert torch.equal(crumbs(tau, 0.5, 0.2), expected)
    # Too few left for the outliers: keep 9 of 10, so only the largest goes.
    assert torch.equal(crumbs(tau, 0.9, 0.2), torch.where(tau.abs() < 1.0, tau, 0.0))
    assert torch.equal(crumbs(tau, 1.0, 0.2), tau)


def test_slerp_keeps_the_angle_and_lengths() -> None:
    e1, e2 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])
    half = slerp(0.5, e1, e2)
    assert torch.allclose(half, torch.tensor([2**0.5, 2**0.5]))  # on the circle of radius 2
    assert torch.allclose(slerp(1 / 3, e1, e2), torch.tensor([3**0.5, 1.0]))  # 30°
    assert torch.equal(slerp(0.25, e1, 3 * e1), 1.5 * e1)  # colinear: the straight line
    x = TensorInputs.from_tensors("w", theta_general=e1 + 1, theta_pre=torch.ones(2), tau=[e2])
    assert torch.allclose(METHODS["nuslerp"](x, (1.0,), torch.empty(2)), half + 1)


def test_model_stock_ratio() -> None:
    # Two task vectors at 60°: cos = 1/2, t = 2·(1/2)/(1 + 1/2) = 2/3.
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 3**0.5 / 2])
    assert stock_ratio([a, b]) == pytest.approx(2 / 3)
    assert stock_ratio([a, -a]) == 0.0  # opposite: no finite estimate, θ_pre kept
    x = TensorInputs.from_tensors("w", theta_general=a, theta_pre=torch.zeros(2), tau=[b / 2])
    # ω = 2 scales τ_1 back to b: θ = t·(a + b)/2.
    expected = (2 / 3) * (a + b) / 2
    assert torch.allclose(METHODS["model_stock"](x, (2.0,), torch.empty(2)), expected)


def test_sce_weighs_by_energy_and_erases_minority_signs() -> None:
    deltas = torch.tensor([[2.0, 1.0, -1.0], [-1.0, 1.0, 3.0]])
    # Energies: mean squares 2 and 11/3, weights 6/17 and 11/17. Majority signs (of the sums
    # 1, 2, 2): +, +, +, so entry 0 keeps input 0 only and entry 2 input 1 only.
    w0, w1 = 6 / 17, 11 / 17
    expected = torch.tensor([2.0, (w0 + w1) / (w0 + w1), 3.0])
    assert torch.allclose(sce(deltas, 1.0), expected)
    # Entry 1 does not vary: select_topk counts the other two, so 0.5 keeps one, the one of
    # largest variance (entry 2: 4 against 2.25); 1/3 keeps int(2/3) = 0.
    assert torch.allclose(sce(deltas, 0.5), torch.tensor([0.0, 0.0, 3.0]))
    assert torch.equal(sce(deltas, 1 / 3), torch.zeros(3))


def test_karcher_mean_of_two_directions_is_their_bisector() -> None:
    # Directions 90° apart at equal weights: the bisector (e1 + e2)/√2; lengths 2 and 4 average
    # to 3. Weights 1/3 and 2/3: on a circle the Karcher mean is the weighted mean angle, 60°
    # from e1; the length (2 + 2·4)/3.
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    assert torch.allclose(karcher_mean([a, b], [0.5, 0.5]), 3 * torch.tensor([1.0, 1.0]) / 2**0.5,
                          atol=1e-5)
    expected = (10 / 3) * torch.tensor([0.5, 3**0.5 / 2])
    assert torch.allclose(karcher_mean([a, b], [1 / 3, 2 / 3]), expected, atol=1e-5)
    x = TensorInputs.from_tensors("w", theta_general=a, theta=[b])
    assert torch.allclose(METHODS["karcher"](x, (0.0,), torch.empty(2)), a)  # ω = 0: θ_G


def test_nuslerp_merges_one_skill_only(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="'nuslerp' merges 1 skill"):
        merge_to_disk(
            "nuslerp",
            models["general"],
            [(0.5, 0.5)],
            [tmp_path / "out"],
            theta_pre=models["pre"],
            task_vectors=[models["tv1"], models["tv2"]],
            options=QUIET,
        )
    assert not (tmp_path / "out").exists()
