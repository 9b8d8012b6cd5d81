"""Multi-skill merges against their formulas, computed here from the files' tensors.

Each skill gets its own ω (all different), so applying ω_1 to τ_2, reversing the ω vector or
reading τ_1 for every skill changes the result. The expected values never go through the
engine: the formulas are written out below from the models' and task vectors' raw tensors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from mtl.merge import METHODS, InPlaceMerger, TensorInputs, extract_task_vector, merge_to_disk

TINY = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=32,
    tie_word_embeddings=False,
    vocab_size=40,
)
OMEGA = (0.2, 0.55, 0.9)  # one per skill, all different
QUIET = {"progress": False}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """θ_pre, θ_G and three skill models whose task vectors differ in size and direction."""
    root = tmp_path_factory.mktemp("pairing")
    torch.manual_seed(0)
    pre = LlamaForCausalLM(LlamaConfig(**TINY)).state_dict()
    generator = torch.Generator().manual_seed(1)

    def model(name: str, scale: float) -> Path:
        state = {k: v + scale * torch.randn(v.shape, generator=generator) for k, v in pre.items()}
        net = LlamaForCausalLM(LlamaConfig(**TINY))
        net.load_state_dict(state)
        net.save_pretrained(root / name)
        return root / name

    paths = {"pre": model("pre", 0.0), "general": model("general", 0.02)}
    paths["skills"] = [model(f"d{k}", 0.01 * (k + 1)) for k in range(3)]
    paths["tvs"] = []
    for k, skill in enumerate(paths["skills"]):
        tv = root / f"tv{k}.safetensors"
        extract_task_vector(paths["pre"], skill, tv, progress=False)
        paths["tvs"].append(tv)
    return paths


def _expected(method: str, world: dict) -> dict[str, torch.Tensor]:
    """The merge at OMEGA, from the files' tensors, by the method's formula."""
    pre, general = _weights(world["pre"]), _weights(world["general"])
    skills = [_weights(path) for path in world["skills"]]
    out = {}
    for name, g in general.items():
        taus = [s[name] - pre[name] for s in skills]
        if method == "task_arithmetic":
            out[name] = g + sum(w * t for w, t in zip(OMEGA, taus, strict=True))
        elif method == "linear":
            thetas = [s[name] for s in skills]
            rest = 1 - sum(OMEGA)
            out[name] = rest * g + sum(w * t for w, t in zip(OMEGA, thetas, strict=True))
        elif method in ("dare", "dare_ties", "ties"):
            # density 1: nothing dropped or trimmed. dare: θ_pre + τ_G + Σ ω_k τ_k; the
            # sign-elected ones sum only the weighted deltas that agree with their sum's sign.
            deltas = [g - pre[name], *(w * t for w, t in zip(OMEGA, taus, strict=True))]
            if method == "dare":
                out[name] = pre[name] + sum(deltas)
            else:
                total = sum(deltas)
                sign = torch.where(total >= 0, 1.0, -1.0)
                out[name] = pre[name] + sum(d * (torch.sign(d) == sign) for d in deltas)
    return out


PAIRED = ["task_arithmetic", "linear", "ties", "dare", "dare_ties"]


@pytest.mark.parametrize("method", PAIRED)
def test_multi_skill_merge_on_disk_pairs_each_omega_with_its_skill(
    method: str, world: dict, tmp_path: Path
) -> None:
    skills_as = METHODS[method].skills_as
    inputs = (
        {"task_vectors": world["tvs"]} if skills_as == "tau" else {"finetuned": world["skills"]}
    )
    (result,) = merge_to_disk(
        method,
        world["general"],
        [OMEGA],
        [tmp_path / "out"],
        theta_pre=world["pre"],
        options={"density": 1.0, **QUIET},
        **inputs,
    )
    assert result["recipe"]["omega"] == list(OMEGA)
    merged, expected = _weights(tmp_path / "out"), _expected(method, world)
    assert merged.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("method", PAIRED)
def test_multi_skill_merge_in_memory_pairs_each_omega_with_its_skill(
    method: str, world: dict
) -> None:
    model = LlamaForCausalLM.from_pretrained(world["general"], dtype=torch.float32)
    skills_as = METHODS[method].skills_as
    inputs = (
        {"task_vectors": world["tvs"]} if skills_as == "tau" else {"finetuned": world["skills"]}
    )
    merger = InPlaceMerger(
        model, method=method, theta_pre=world["pre"], options={"density": 1.0}, **inputs
    )
    merger.apply(OMEGA)
    expected = _expected(method, world)
    state = model.state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=1e-6, msg=name)


def _trim_by_sorting(tau: torch.Tensor, density: float) -> torch.Tensor:
    """TIES' trim written independently: keep the k largest |τ| (k = int(density·n)) by a full
    sort (the engine selects with kthvalue)."""
    k = max(1, int(density * tau.numel()))
    order = tau.abs().flatten().argsort(descending=True)
    keep = torch.zeros(tau.numel(), dtype=torch.bool)
    keep[order[:k]] = True
    return torch.where(keep.view(tau.shape), tau, 0.0)


def _inputs(density: float) -> TensorInputs:
    generator = torch.Generator().manual_seed(3)
    pre, tau_g, tau_1, tau_2 = (torch.randn(30, 40, generator=generator) for _ in range(4))
    return TensorInputs.from_tensors(
        "w",
        theta_general=pre + tau_g,
        theta_pre=pre,
        tau=[tau_1, tau_2],
        options={"density": density},
    )


def test_ties_two_skills_against_trim_and_elect_written_out() -> None:
    x = _inputs(density=0.4)
    pre, tau_g, taus = x.theta_pre.clone(), x.tau_general.clone(), [t.clone() for t in x.tau]
    omega = (0.3, 0.8)
    deltas = [_trim_by_sorting(tau_g, 0.4)] + [
        w * _trim_by_sorting(t, 0.4) for w, t in zip(omega, taus, strict=True)
    ]
    sign = torch.where(sum(deltas) >= 0, 1.0, -1.0)
    expected = pre + sum(d * (torch.sign(d) == sign) for d in deltas)
    merged = METHODS["ties"](x, omega, torch.empty(30, 40))
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-6)


def test_dare_ties_without_drops_is_the_sign_elected_sum() -> None:
    """density 1 drops nothing: θ_pre + the weighted deltas that agree with their sum's sign,
    here computed without the engine (not compared with ties, which shares dare_ties's code and
    would agree with a bug in it)."""
    x = _inputs(density=1.0)
    omega = (0.7, 0.25)
    deltas = [x.tau_general.clone()] + [w * t.clone() for w, t in zip(omega, x.tau, strict=True)]
    sign = torch.where(sum(deltas) >= 0, 1.0, -1.0)
    expected = x.theta_pre.clone() + sum(d * (torch.sign(d) == sign) for d in deltas)
    merged = METHODS["dare_ties"](x, omega, torch.empty(30, 40))
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-6)
    # Some entries really are outvoted, or the election would be untested.
    assert any(((torch.sign(d) != sign) & (d != 0)).any() for d in deltas)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_methods_never_modify_their_inputs(method: str) -> None:
    generator = torch.Generator().manual_seed(4)
    pre, general, a, b = (torch.randn(8, 6, generator=generator) for _ in range(4))
    given = [t.clone() for t in (pre, general, a, b)]
    n = METHODS[method].n_skills or 2
    skills = [a, b][:n]
    view = {"tau": skills} if METHODS[method].skills_as == "tau" else {"theta": skills}
    x = TensorInputs.from_tensors(
        "w", theta_general=general, theta_pre=pre, options={"density": 0.5}, **view
    )
    for omega in ((0.3, 0.6), (1.0, 0.1)):
        METHODS[method](x, omega[:n], torch.empty(8, 6))
    assert all(torch.equal(t, g) for t, g in zip((pre, general, a, b), given, strict=True))
