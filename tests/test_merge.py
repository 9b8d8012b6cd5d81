"""The merge engine against mergekit 0.1.5, DARE's formula, and every bad-input case.

Tiny random Llama models (hidden 32, 2 layers, vocabulary 64) stand in for θ_pre, θ_G and the
skill models. mergekit runs in-process (its import is the slow part) on the recipes our engine
writes next to each output, so the same run checks the emitted mergekit_config.yml as well.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from mtl.merge import (
    METHODS,
    InPlaceMerger,
    MergeError,
    TensorInputs,
    direct,
    engine,
    extract_task_vector,
    heuristic_omega,
    merge_to_disk,
)
from mtl.merge.shards import Writer

QUIET = {"progress": False}
TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=64,
    tie_word_embeddings=False,
)
EMBED = "model.embed_tokens.weight"
# mergekit imports numpy.core, deprecated in numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:numpy.core is deprecated:DeprecationWarning")


def _save_model(path: Path, state: dict[str, torch.Tensor], vocab: int = 64, **save) -> Path:
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **TINY))
    model.load_state_dict(state)
    model.save_pretrained(path, **save)
    return path


def _perturbed(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: v + 0.01 * torch.randn(v.shape, generator=generator) for k, v in state.items()}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def _variant(
    src: Path,
    dst: Path,
    mutate: Callable[[dict[str, torch.Tensor]], None] = lambda tensors: None,
    **config: object,
) -> Path:
    """A single-file copy of model `src` with its tensors and config.json edited."""
    dst.mkdir(parents=True)
    tensors = _weights(src)
    mutate(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    settings = json.loads((src / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**settings, **config}))
    return dst


def _blake3(path: Path) -> str:
    """The file hash records use (mtl.hashing.HASH), computed here independently."""
    return "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape and a[name].dtype == b[name].dtype, name
    return max((a[n].float() - b[n].float()).abs().max().item() for n in a)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """θ_pre; θ_G (sharded, with tokenizer files); θ_D1, θ_D2; θ_CFT; τ_1, τ_2."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    pre = LlamaForCausalLM(LlamaConfig(vocab_size=64, **TINY)).state_dict()
    paths = {
        "pre": _save_model(root / "pre", pre),
        "general": _save_model(root / "general", _perturbed(pre, 1), max_shard_size="40KB"),
        "d1": _save_model(root / "d1", _perturbed(pre, 2)),
        "d2": _save_model(root / "d2", _perturbed(pre, 3)),
    }
    assert (paths["general"] / "model.safetensors.index.json").exists()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (paths["general"] / name).write_text('{"tiny": true}\n')
    paths["cft"] = _save_model(root / "cft", _perturbed(_weights(paths["general"]), 4))
    for k in (1, 2):
        paths[f"tv{k}"] = root / f"tv{k}.safetensors"
        extract_task_vector(paths["pre"], paths[f"d{k}"], paths[f"tv{k}"], progress=False)
    return paths


# (method, settings, skill inputs, options): each is merged by us, then by mergekit from the
# mergekit_config.yml we wrote. Grids are one call, so they also exercise multi-output passes.
CASES = {
    "task_arithmetic": ("task_arithmetic", [0.0, 0.3, 1.0], {"finetuned": ["d1"]}, {}),
    "task_arithmetic_tv": ("task_arithmetic", [0.3], {"task_vectors": ["tv1"]}, {}),
    "task_arithmetic_2skills": (
        "task_arithmetic",
        [(0.3, 0.6)],
        {"finetuned": ["d1", "d2"]},
        {},
    ),
    "linear": ("linear", [0.0, 0.3, 1.0], {"finetuned": ["d1"]}, {}),
    "wise_ft": ("wise_ft", [0.7], {"finetuned": ["cft"]}, {}),
    "ties": ("ties", [0.0, 0.5, 1.0], {"finetuned": ["d1"]}, {"density": 0.5}),
    "ties_normalize": ("ties", [0.5], {"finetuned": ["d1"]}, {"normalize": True}),
    "ties_2skills": ("ties", [(0.4, 0.8)], {"finetuned": ["d1", "d2"]}, {"density": 0.3}),
}


@pytest.fixture(scope="module")
def ours(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ours")
    results = {}
    for case, (method, settings, skills, options) in CASES.items():
        out_dirs = [root / f"{case}-{i}" for i in range(len(settings))]
        results[case] = merge_to_disk(
            method,
            models["general"],
            settings,
            out_dirs,
            theta_pre=models["pre"],
            **{kind: [models[name] for name in names] for kind, names in skills.items()},
            options={**options, **QUIET},
        )
    return results


@pytest.fixture(scope="module")
def mergekit_outputs(ours: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """mergekit's merge of every output's own mergekit_config.yml, run in this process."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    root = tmp_path_factory.mktemp("mergekit")
    options = MergeOptions(
        allow_crimes=True, copy_tokenizer=False, quiet=True, write_model_card=False
    )
    outputs = {}
    for results in ours.values():
        for result in results:
            recipe = yaml.safe_load((Path(result["path"]) / "mergekit_config.yml").read_text())
            out = root / Path(result["path"]).name
            run_merge(MergeConfiguration.model_validate(recipe), str(out), options)
            outputs[result["path"]] = out
    return outputs


@pytest.mark.parametrize("case", CASES)
def test_matches_mergekit(case: str, ours: dict, mergekit_outputs: dict[str, Path]) -> None:
    for result in ours[case]:
        theirs = _weights(mergekit_outputs[result["path"]])
        assert _max_diff(_weights(Path(result["path"])), theirs) <= 1e-6


def test_mergekit_recipe_names_the_inputs(ours: dict, models: dict[str, Path]) -> None:
    (result,) = ours["task_arithmetic_tv"]
    recipe = yaml.safe_load((Path(result["path"]) / "mergekit_config.yml").read_text())
    assert recipe["merge_method"] == "task_arithmetic"
    assert recipe["base_model"] == str(models["pre"].resolve())
    assert [m["model"] for m in recipe["models"]] == [
        str(models["general"].resolve()),
        str(models["d1"].resolve()),  # from the task vector's metadata
    ]
    assert [m["parameters"]["weight"] for m in recipe["models"]] == [1.0, 0.3]
    assert recipe["parameters"] == {"normalize": False}


def test_output_folder(ours: dict, models: dict[str, Path]) -> None:
    result = ours["task_arithmetic"][1]
    folder = Path(result["path"])
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "README.md"} <= names
    assert {"model.safetensors", "mergekit_config.yml"} <= names
    assert result["files"] == {p.name: _blake3(p) for p in folder.iterdir()}
    assert (folder / "config.json").read_bytes() == (models["general"] / "config.json").read_bytes()
    card = (folder / "README.md").read_text()
    assert "task_arithmetic" in card and "θ = θ_G + Σ_k ω_k·τ_k" in card and "[0.3]" in card
    assert result["recipe"]["omega"] == [0.3]
    assert result["recipe"]["finetuned"] == [str(models["d1"])]
    with safe_open(folder / "model.safetensors", "pt") as handle:
        assert handle.metadata() == {"format": "pt"}


def test_sharded_output_loads_in_transformers(models: dict[str, Path], tmp_path: Path) -> None:
    sharded, single = tmp_path / "sharded", tmp_path / "single"
    for out, size in ((sharded, 30_000), (single, 10**9)):
        merge_to_disk(
            "task_arithmetic",
            models["general"],
            [0.5],
            [out],
            task_vectors=[models["tv1"]],
            options={"shard_size": size, **QUIET},
        )
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = LlamaForCausalLM.from_pretrained(sharded, dtype=torch.float32)
    expected = _weights(single)
    assert all(torch.equal(t, expected[name]) for name, t in model.state_dict().items())


def test_one_pass_equals_separate_runs(models: dict[str, Path], tmp_path: Path) -> None:
    grid = [0.0, 0.5, 1.0]
    for method in METHODS:
        kind = "finetuned" if method == "wise_ft" else "task_vectors"
        inputs = {kind: [models["cft" if method == "wise_ft" else "tv1"]]}
        run = dict(theta_pre=models["pre"], **inputs, options=QUIET)
        together = merge_to_disk(
            method, models["general"], grid, [tmp_path / f"{method}-{w}" for w in grid], **run
        )
        for w, joint in zip(grid, together, strict=True):
            (alone,) = merge_to_disk(method, models["general"], [w], [tmp_path / "alone"], **run)
            weights = {n: h for n, h in joint["files"].items() if n.endswith(".safetensors")}
            assert weights == {n: alone["files"][n] for n in weights}, (method, w)


def test_blocks_and_staging_leave_the_bytes_alone(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny blocks, staging buffers and O_DIRECT buffers take every path of the writer —
    blocks staged, a full buffer flushed, whole tensors (TIES) too large to stage, direct
    writes padded and cut back — and write the same files as the defaults, and as ordinary
    writes through the page cache."""
    grid = [0.0, 0.5, 1.0]

    def run(tag: str, **options: bool) -> dict[str, list[dict]]:
        return {
            method: merge_to_disk(
                method,
                models["general"],
                grid,
                [tmp_path / f"{tag}-{method}-{w}" for w in grid],
                theta_pre=models["pre"],
                task_vectors=[models["tv1"]],
                options=QUIET | options,
            )
            for method in ("task_arithmetic", "ties")
        }

    default = run("default")
    buffered = run("buffered", direct_io=False)
    monkeypatch.setattr(engine, "_BLOCK_ELEMENTS", 48)  # 1-2 rows of the tiny model's tensors
    monkeypatch.setattr(Writer, "STAGE_BYTES", 1000)  # a few blocks; whole tensors exceed it
    monkeypatch.setattr(direct, "BUFFER_BYTES", 2 * direct.ALIGN)  # many direct writes a file
    small = run("small")
    for method, other in [(m, o) for m in default for o in (small[m], buffered[m])]:
        for ours, theirs in zip(default[method], other, strict=True):
            weights = [name for name in ours["files"] if name.endswith(".safetensors")]
            assert weights, method
            for name in weights:  # the model card names the output's path: not compared
                assert ours["files"][name] == theirs["files"][name], (method, name)
                here, there = Path(ours["path"]) / name, Path(theirs["path"]) / name
                assert here.read_bytes() == there.read_bytes(), (method, name)
    tv = tmp_path / "tau.safetensors"
    extract_task_vector(models["pre"], models["d1"], tv, progress=False)
    assert tv.read_bytes() == models["tv1"].read_bytes()
    monkeypatch.setenv("MTL_DIRECT_IO", "0")  # task vectors take the option from here
    extract_task_vector(models["pre"], models["d1"], tv, progress=False)
    assert tv.read_bytes() == models["tv1"].read_bytes()


def test_extract_task_vector(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "tau.safetensors"
    digest = extract_task_vector(models["pre"], models["d1"], out, progress=False)
    assert digest == _blake3(out)
    assert [p.name for p in tmp_path.iterdir()] == ["tau.safetensors"]
    tau, pre, d1 = load_file(out), _weights(models["pre"]), _weights(models["d1"])
    assert all(torch.equal(tau[n], d1[n] - pre[n]) for n in d1) and tau.keys() == d1.keys()
    with safe_open(out, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["theta_pre"] == str(models["pre"].resolve())
    assert metadata["theta_d"] == str(models["d1"].resolve())
    assert metadata["model_type"] == "llama"


def test_task_vectors_equal_finetuned_inputs(models: dict[str, Path], tmp_path: Path) -> None:
    via_tau, via_theta = tmp_path / "tau", tmp_path / "theta"
    merge_to_disk(
        "task_arithmetic",
        models["general"],
        [0.4],
        [via_tau],
        task_vectors=[models["tv1"]],
        options=QUIET,
    )
    merge_to_disk(
        "task_arithmetic",
        models["general"],
        [0.4],
        [via_theta],
        theta_pre=models["pre"],
        finetuned=[models["d1"]],
        options=QUIET,
    )
    assert _max_diff(_weights(via_tau), _weights(via_theta)) == 0


@pytest.mark.parametrize("method", METHODS)
def test_in_place_equals_disk(method: str, models: dict[str, Path], tmp_path: Path) -> None:
    inputs = {"finetuned": [models["cft"]]} if method == "wise_ft" else {}
    inputs = inputs or {"task_vectors": [models["tv1"]]}
    merge_to_disk(
        method,
        models["general"],
        [0.3],
        [tmp_path / "disk"],
        theta_pre=models["pre"],
        **inputs,
        options=QUIET,
    )
    model = LlamaForCausalLM.from_pretrained(models["general"], dtype=torch.float32)
    general = {n: t.clone() for n, t in model.state_dict().items()}
    merger = InPlaceMerger(model, method=method, theta_pre=models["pre"], **inputs)
    merger.apply([0.9])
    merger.apply([0.3])  # recomputed from θ_G, not from the ω = 0.9 point
    disk = _weights(tmp_path / "disk")
    assert all(torch.equal(t, disk[n]) for n, t in model.state_dict().items())
    merger.restore()
    assert all(torch.equal(t, general[n]) for n, t in model.state_dict().items())


def _dare_inputs(seed: int = 0, density: float = 0.7, name: str = "w") -> TensorInputs:
    generator = torch.Generator().manual_seed(0)
    pre, tau_g, tau_1 = (torch.randn(100, 100, generator=generator) for _ in range(3))
    return TensorInputs.from_tensors(
        name,
        theta_general=pre + tau_g,
        theta_pre=pre,
        tau=[tau_1],
        options={"density": density, "seed": seed},
    )


def test_dare_formula() -> None:
    x = _dare_inputs(density=0.7)
    p = 1 - 0.7
    for dropped, tau in zip(x.dropped(), (x.tau_general, *x.tau), strict=True):
        kept = dropped != 0
        assert abs(1 - kept.float().mean().item() - p) < 0.02
        assert torch.equal(dropped[kept], tau[kept] / (1 - p))  # survivors scaled by 1/(1-p)
    out = torch.empty(100, 100)
    expected = x.theta_pre + x.dropped()[0]
    expected.add_(x.dropped()[1], alpha=0.5)
    assert torch.equal(METHODS["dare"](x, (0.5,), out), expected)


def test_dare_masks_are_seeded() -> None:
    def masks(**kwargs: object) -> list[torch.Tensor]:
        return [t != 0 for t in _dare_inputs(**kwargs).dropped()]

    assert all(torch.equal(a, b) for a, b in zip(masks(), masks(), strict=True))
    assert not torch.equal(masks()[0], masks()[1])  # each task vector has its own mask
    assert not torch.equal(masks()[1], masks(seed=1)[1])
    assert not torch.equal(masks()[1], masks(name="v")[1])


def test_dare_expectation_is_task_arithmetic() -> None:
    out = torch.empty(100, 100)
    mean = sum(METHODS["dare"](_dare_inputs(seed), (0.5,), out).clone() for seed in range(200))
    x = _dare_inputs()
    task_arithmetic = METHODS["task_arithmetic"](x, (0.5,), torch.empty(100, 100))
    spread = (x.tau_general.square() + 0.25 * x.tau[0].square()).sqrt() * (0.3 / 0.7) ** 0.5
    error = (mean / 200 - task_arithmetic).abs()
    # Each entry's mean over 200 seeds is within ~4 standard errors of task arithmetic.
    assert (error <= 4 * spread / 200**0.5 + 1e-5).float().mean() > 0.999


@pytest.fixture(scope="module")
def pre63(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """θ_pre with one vocabulary row fewer than θ_G, as Llama-2 (32000) vs Tülu (32001)."""

    def drop_last_row(tensors: dict[str, torch.Tensor]) -> None:
        for name in (EMBED, "lm_head.weight"):
            tensors[name] = tensors[name][:-1].clone()

    folder = tmp_path_factory.mktemp("pre63") / "pre63"
    return _variant(models["pre"], folder, drop_last_row, vocab_size=63)


def test_vocab_padding(models: dict[str, Path], pre63: Path, tmp_path: Path) -> None:
    run = dict(finetuned=[models["d1"]], options=QUIET)
    with pytest.raises(MergeError, match=r"model.embed_tokens.weight.*\[63, 32\].*\[64, 32\]"):
        merge_to_disk(
            "task_arithmetic", models["general"], [0.5], [tmp_path / "x"], theta_pre=pre63, **run
        )
    assert not (tmp_path / "x").exists()
    merge_to_disk(
        "task_arithmetic",
        models["general"],
        [0.5],
        [tmp_path / "padded"],
        theta_pre=pre63,
        finetuned=[models["d1"]],
        options={"resize_vocab": "pad", **QUIET},
    )
    merge_to_disk(
        "task_arithmetic",
        models["general"],
        [0.5],
        [tmp_path / "full"],
        theta_pre=models["pre"],
        **run,
    )
    padded, full = _weights(tmp_path / "padded"), _weights(tmp_path / "full")
    general, d1 = _weights(models["general"]), _weights(models["d1"])
    assert torch.equal(padded[EMBED][:63], full[EMBED][:63])
    # The missing θ_pre row is θ_G's, so the new token interpolates θ_G toward θ_D.
    new_row = general[EMBED][63] + 0.5 * (d1[EMBED][63] - general[EMBED][63])
    assert torch.allclose(padded[EMBED][63], new_row)
    assert "tokenizer_source" in (tmp_path / "padded" / "mergekit_config.yml").read_text()

    tau = tmp_path / "tau.safetensors"
    with pytest.raises(MergeError, match="vocabulary"):
        extract_task_vector(pre63, models["d1"], tau, progress=False)
    extract_task_vector(pre63, models["d1"], tau, resize_vocab="pad", progress=False)
    assert torch.equal(load_file(tau)[EMBED][63], torch.zeros(32))


def _set(name: str, value: float) -> Callable[[dict[str, torch.Tensor]], None]:
    def mutate(tensors: dict[str, torch.Tensor]) -> None:
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[5] = value

    return mutate


LAST = "model.norm.weight"  # the last tensor of θ_G's last shard: fails after writes began
Q = "model.layers.0.self_attn.q_proj.weight"
UP = "model.layers.1.mlp.up_proj.weight"
BAD_MODELS: dict[str, tuple[dict, Callable[[dict[str, torch.Tensor]], None] | None, str]] = {
    # case: (config.json edits, tensor edits, error pattern)
    "model_type": ({"model_type": "mistral"}, None, r"config.json has model_type='mistral'"),
    "hidden_size": ({"hidden_size": 48}, None, r"hidden_size=48"),
    "missing": ({}, lambda t: t.pop(UP), rf"tensor '{UP}' is missing"),
    "extra": ({}, lambda t: t.update(extra=torch.zeros(2)), r"extra tensor 'extra'"),
    "shape": ({}, lambda t: t.update({Q: torch.zeros(32, 16)}), rf"'{Q}'.*\[32, 16\].*mismatch"),
    "dtype": ({}, lambda t: t.update({Q: t[Q].half()}), rf"'{Q}' is stored as torch.float16"),
    "nan": ({}, _set(LAST, float("nan")), rf"d1bad.*tensor '{LAST}' contains NaN"),
    "inf": ({}, _set(UP, float("inf")), rf"d1bad.*tensor '{UP}' contains Inf"),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_finetuned_model(case: str, models: dict[str, Path], tmp_path: Path) -> None:
    config, mutate, pattern = BAD_MODELS[case]
    bad = _variant(models["d1"], tmp_path / "d1bad", mutate or (lambda t: None), **config)
    outputs = tmp_path / "outputs"
    with pytest.raises(MergeError, match=pattern):
        merge_to_disk(
            "task_arithmetic",
            models["general"],
            [0.2, 0.4],
            [outputs / "a", outputs / "b"],
            theta_pre=models["pre"],
            finetuned=[bad],
            options=QUIET,
        )
    assert not outputs.exists() or list(outputs.iterdir()) == []


def test_bad_task_vector_and_in_place(models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "tv_nan.safetensors"
    tensors = load_file(models["tv1"])
    _set(Q, float("nan"))(tensors)
    save_file(tensors, bad)
    with pytest.raises(MergeError, match=rf"tv_nan.safetensors: tensor '{Q}' contains NaN"):
        merge_to_disk(
            "task_arithmetic",
            models["general"],
            [0.5],
            [tmp_path / "out"],
            task_vectors=[bad],
            options=QUIET,
        )
    assert not (tmp_path / "out").exists()

    model = LlamaForCausalLM.from_pretrained(models["general"], dtype=torch.float32)
    general = {n: t.clone() for n, t in model.state_dict().items()}
    merger = InPlaceMerger(model, [bad])
    with pytest.raises(MergeError, match=rf"tensor '{Q}' contains NaN"):
        merger.apply([0.5])
    assert all(torch.equal(t, general[n]) for n, t in model.state_dict().items())
    with pytest.raises(MergeError, match=r"1 weight\(s\) for 2 skill"):
        InPlaceMerger(model, [models["tv1"], models["tv2"]]).apply([0.5])


def test_output_overflow(models: dict[str, Path], tmp_path: Path) -> None:
    """A float16 θ_G plus a large ω·τ overflows float16: refused, nothing written."""
    general16 = _variant(
        models["general"], tmp_path / "g16", lambda t: t.update({n: v.half() for n, v in t.items()})
    )
    outputs = tmp_path / "outputs"
    with pytest.raises(MergeError, match=r"output .*/b: tensor '.*' has values up to .*float16"):
        merge_to_disk(
            "task_arithmetic",
            general16,
            [1.0, 1e8],
            [outputs / "a", outputs / "b"],
            task_vectors=[models["tv1"]],
            options=QUIET,
        )
    assert list(outputs.iterdir()) == []


def test_pickle_checkpoints_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(models["d1"] / "config.json", folder)
    torch.save(_weights(models["d1"]), folder / "pytorch_model.bin")
    torch.save(load_file(models["tv1"]), tmp_path / "tau.pt")
    run = dict(theta_pre=models["pre"], options=QUIET)
    with pytest.raises(MergeError, match=r"pytorch_model.bin: pickle checkpoints are refused"):
        merge_to_disk(
            "task_arithmetic",
            models["general"],
            [0.5],
            [tmp_path / "out"],
            finetuned=[folder],
            **run,
        )
    with pytest.raises(MergeError, match=r"tau.pt: pickle checkpoints are refused"):
        merge_to_disk(
            "task_arithmetic",
            models["general"],
            [0.5],
            [tmp_path / "out"],
            task_vectors=[tmp_path / "tau.pt"],
            **run,
        )
    with pytest.raises(MergeError, match=r"pytorch_model.bin: pickle"):
        extract_task_vector(models["pre"], folder, tmp_path / "tau.safetensors")
    assert not (tmp_path / "out").exists() and not (tmp_path / "tau.safetensors").exists()


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (dict(method="ties", task_vectors=["tv1"]), r"'ties' with task vectors needs theta_pre"),
        (dict(finetuned=["d1"]), r"'task_arithmetic' with finetuned models needs theta_pre"),
        (dict(method="slerp", task_vectors=["tv1"]), r"unknown merge method 'slerp'"),
        (dict(task_vectors=["tv1"], settings=[(0.1, 0.2)]), r"settings\[0\].*2 weight"),
        (dict(task_vectors=["tv1"], options={"densty": 0.5}), r"unknown merge option.*densty"),
        (dict(task_vectors=["tv1"], out=["general"]), r"would overwrite input"),
        (dict(task_vectors=["tv1"], finetuned=["d1"]), r"either as task_vectors or"),
    ],
)
def test_bad_calls(call: dict, pattern: str, models: dict[str, Path], tmp_path: Path) -> None:
    out = [models[name] for name in call.get("out", [])] or [tmp_path / "out"]
    with pytest.raises(MergeError, match=pattern):
        merge_to_disk(
            call.get("method", "task_arithmetic"),
            models["general"],
            call.get("settings", [0.5]),
            out,
            task_vectors=[models[n] for n in call.get("task_vectors", [])],
            finetuned=[models[n] for n in call.get("finetuned", [])],
            options={**call.get("options", {}), **QUIET},
        )
    assert not (tmp_path / "out").exists() and models["general"].exists()


def test_heuristic_omega() -> None:
    assert heuristic_omega(50_000, 200_000) == 0.25
    with pytest.raises(MergeError):
        heuristic_omega(1, 0)


def test_registry_uses_paper_names() -> None:
    paper = {
        "task_arithmetic": "task_arithmetic",
        "linear": "linear",
        "wise_ft": "linear",
        "wise_ft_match": "linear",
        "ties": "ties",
        "dare": "dare_linear",
        "dare_ties": "dare_ties",
    }
    kit = {name: m.mergekit.name for name, m in METHODS.items() if m.mergekit is not None}
    assert paper.items() <= kit.items()


def test_row_blocks_equal_whole_tensors(
    models: dict[str, Path], pre63: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Elementwise methods stream big tensors in row blocks; the blocks change no bit.

    Blocks of 128 entries are 4 rows of the 64 x 32 embedding, so one block straddles the row
    θ_pre lacks and the vocabulary padding is exercised across a block boundary.
    """

    def digests(tag: str) -> list[str]:
        found = [
            extract_task_vector(
                pre63,
                models["d1"],
                tmp_path / f"tau-{tag}.safetensors",
                resize_vocab="pad",
                progress=False,
            )
        ]
        for method in ("task_arithmetic", "linear"):
            results = merge_to_disk(
                method,
                models["general"],
                [0.3, 0.8],
                [tmp_path / f"{method}-{tag}-{i}" for i in range(2)],
                theta_pre=pre63,
                finetuned=[models["d1"]],
                options={"resize_vocab": "pad", **QUIET},
            )
            found += [result["files"]["model.safetensors"] for result in results]
        return found

    whole = digests("whole")
    monkeypatch.setattr(engine, "_BLOCK_ELEMENTS", 128)
    assert digests("blocks") == whole


@pytest.mark.parametrize("method", [m for m in METHODS if METHODS[m].bound is not None])
@pytest.mark.parametrize(
    "native, omega",
    [
        (True, (0.3,)),
        (True, (-2.5,)),
        (True, (0.7, -0.4)),
        (True, (1.5, 0.2, -0.9)),
        (False, (0.6,)),  # the skills given in the other view, converted with θ_pre
        (False, (0.5, 1.2)),
    ],
)
@pytest.mark.parametrize("aligned", [False, True])
def test_declared_bounds_hold(
    method: str, native: bool, omega: tuple[float, ...], aligned: bool
) -> None:
    """A method's bound is at least the largest |entry| of its output, and it is reached when
    every input's largest entry sits in one place with the sign that adds up (so a bound that
    forgot a weight's sign, an input or θ_pre's share of a converted view would fall short)."""
    spec = METHODS[method]
    generator = torch.Generator().manual_seed(7)

    def draw(scale: float, sign: float) -> torch.Tensor:
        tensor = scale * torch.randn(40, 8, generator=generator)
        if aligned:
            tensor[0, 0] = sign * (tensor.abs().max() + 1)
        return tensor

    signs = [1.0 if w >= 0 else -1.0 for w in omega]
    # Linear methods weigh θ_G by 1 − Σω, negative past 1.
    general = draw(3.0, -1.0 if spec.skills_as == "theta" and sum(omega) > 1 else 1.0)
    skills = [draw(0.5, sign) for sign in signs]
    pre = None
    if not native:  # θ_k = τ_k + θ_pre adds up with θ_pre's sign, τ_k = θ_k − θ_pre with the other
        pre = draw(1.0, signs[0] if spec.skills_as == "theta" else -signs[0])
    as_tau = (spec.skills_as == "tau") == native
    x = TensorInputs.from_tensors(
        "w", theta_general=general, theta_pre=pre, **{"tau" if as_tau else "theta": skills}
    )
    largest = spec(x, omega, torch.empty(40, 8)).abs().max().item()
    bound = spec.bound(x, omega)
    assert largest <= bound * (1 + 1e-6), (largest, bound)
    if aligned:
        assert largest >= bound * (1 - 1e-5), (largest, bound)


def test_outputs_proved_in_range_are_not_checked(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task arithmetic's outputs are bounded by their inputs, far below bfloat16's range: the
    engine skips their range check (the pass's costliest step after the cast and the write);
    TIES declares no bound and every output is checked."""
    from mtl.merge import shards

    checked: list[str] = []

    def counting(tensor: torch.Tensor, what: str, dtype: torch.dtype = torch.float32) -> float:
        checked.append(what)
        return 0.0

    monkeypatch.setattr(shards, "check_range", counting)
    run = dict(theta_pre=models["pre"], task_vectors=[models["tv1"]], options=QUIET)
    merge_to_disk(
        "task_arithmetic", models["general"], [0.5, 1], [tmp_path / "a", tmp_path / "b"], **run
    )
    assert checked == []
    merge_to_disk("ties", models["general"], [0.5], [tmp_path / "c"], **run)
    assert len(checked) == len(_weights(models["general"]))


def test_mixed_dtypes_share_a_staging_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tensors of 2- and 4-byte dtypes and odd sizes in one file, several to a staging
    buffer: a block of another dtype than the buffer's starts a new one; every value is as
    computed."""
    shapes = {"a": ((3,), torch.bfloat16), "b": ((5,), torch.float32), "c": ((7, 3), torch.float16)}
    shapes |= {"d": ((2, 9), torch.bfloat16), "e": ((1,), torch.float32)}
    generator = torch.Generator().manual_seed(3)
    pre = {n: torch.randn(s, generator=generator).to(d) for n, (s, d) in shapes.items()}
    folders = {}
    for role, scale in (("pre", 0.0), ("general", 0.1), ("d", 0.05)):
        folders[role] = tmp_path / role
        folders[role].mkdir()
        tensors = {
            n: (t.float() + scale * torch.randn(t.shape, generator=generator)).to(t.dtype)
            for n, t in pre.items()
        }
        save_file(tensors, folders[role] / "model.safetensors", metadata={"format": "pt"})
        (folders[role] / "config.json").write_text('{"model_type": "toy"}')
    monkeypatch.setattr(Writer, "STAGE_BYTES", 64)  # several tensors to a buffer
    grid = [0.0, 0.4, 1.0]
    merge_to_disk(
        "task_arithmetic",
        folders["general"],
        grid,
        [tmp_path / f"out-{w}" for w in grid],
        theta_pre=folders["pre"],
        finetuned=[folders["d"]],
        options=QUIET,
    )
    general, d, p = (_weights(folders[r]) for r in ("general", "d", "pre"))
    for w in grid:
        out = _weights(tmp_path / f"out-{w}")
        for name, (_, dtype) in shapes.items():
            tau = d[name].float() - p[name].float()
            expected = torch.add(general[name].float(), tau, alpha=w).to(dtype)
            assert out[name].dtype == dtype and torch.equal(out[name], expected), (w, name)
