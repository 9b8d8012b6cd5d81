"""Recipes from config to engine, every method in memory and on disk, vocabulary padding on
every path, architectures whose file and memory tensor names differ, and safe outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from mtl.merge import (
    METHODS,
    InPlaceMerger,
    MergeError,
    Recipe,
    extract_task_vector,
    heuristic_omegas,
    merge_to_disk,
)
from mtl.merge.safetensors import Checkpoint
from mtl.suites import SUITES

REPO = Path(__file__).resolve().parents[1]
LLAMA = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=32,
    tie_word_embeddings=False,
)
NEOX = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=32,
    tie_word_embeddings=False,
)
VOCAB = 41  # θ_G and the skill models; θ_pre has one row fewer (Tülu 32001 vs Llama-2 32000)
QUIET = {"progress": False}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    return {k: v for f in files for k, v in load_file(f).items()}


def _family(root: Path, arch: str) -> dict[str, Path]:
    """θ_pre (VOCAB − 1 rows), θ_G, θ_D per skill (ptm), θ_CFT per skill, task vectors."""
    make = {
        "llama": lambda v: LlamaForCausalLM(LlamaConfig(vocab_size=v, **LLAMA)),
        "neox": lambda v: GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=v, **NEOX)),
    }[arch]
    torch.manual_seed(0)
    base = make(VOCAB).state_dict()
    generator = torch.Generator().manual_seed(1)

    def save(name: str, start: dict[str, torch.Tensor], scale: float, vocab: int) -> Path:
        model = make(vocab)
        state = {}
        for key, value in start.items():
            value = value + scale * torch.randn(value.shape, generator=generator)
            state[key] = value[:vocab] if value.shape[0] == VOCAB else value
        model.load_state_dict(state)
        model.save_pretrained(root / name)
        return root / name

    paths = {
        "pre": save("pre", base, 0.0, VOCAB - 1),
        "general": save("general", base, 0.02, VOCAB),
    }
    general = AutoModelForCausalLM.from_pretrained(paths["general"]).state_dict()
    for k in range(2):
        paths[f"ptm{k}"] = save(f"ptm{k}", base, 0.01 * (k + 2), VOCAB)
        paths[f"cft{k}"] = save(f"cft{k}", general, 0.01, VOCAB)
        paths[f"tv{k}"] = root / f"tv{k}.safetensors"
        extract_task_vector(
            paths["pre"], paths[f"ptm{k}"], paths[f"tv{k}"], resize_vocab="pad", progress=False
        )
    return paths


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _family(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def neox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _family(tmp_path_factory.mktemp("neox"), "neox")


def _skills(recipe: Recipe, paths: dict[str, Path]) -> list[Path]:
    """The inputs a workflow target gives the method (rules/common/merge.smk's skill_input)."""
    n = len(recipe.skills)
    if recipe.skill_inputs == "task_vectors":
        return [paths["tv0"], paths["tv1"]][:n]
    # θ_CFT stands in for every model continued from θ_G (cft, cft-match).
    regime = "ptm" if recipe.spec.skills_from == "pre" else "cft"
    return [paths[f"{regime}0"], paths[f"{regime}1"]][:n]


def _in_memory_equals_on_disk(paths: dict[str, Path], method: str, out: Path) -> None:
    n = METHODS[method].n_skills or 2
    recipe = Recipe.from_config(
        {"method": method, "density": 0.6, "resize_vocab": "pad"}, seed=3, skills=["a", "b"][:n]
    )
    omega = (0.3, 0.7)[:n]
    pre = paths["pre"] if recipe.needs_theta_pre else None
    recipe.to_disk(paths["general"], [omega], [out], _skills(recipe, paths), pre)
    model = AutoModelForCausalLM.from_pretrained(paths["general"], dtype=torch.float32)
    recipe.in_place(model, _skills(recipe, paths), pre).apply(omega)
    # Compared under the files' names, as transformers saves the model.
    model.save_pretrained(out.parent / "memory")
    disk, memory = _weights(out), _weights(out.parent / "memory")
    assert disk.keys() == memory.keys()
    for name, tensor in disk.items():
        assert torch.equal(tensor, memory[name]), f"{method}: {name}"
    assert not torch.equal(disk[next(iter(disk))], _weights(paths["general"])[next(iter(disk))])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_in_memory_equals_on_disk_with_padded_vocabulary(
    method: str, llama: dict[str, Path], tmp_path: Path
) -> None:
    _in_memory_equals_on_disk(llama, method, tmp_path / "disk")


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "wise_ft"])
def test_gpt_neox_in_memory_equals_on_disk(
    method: str, neox: dict[str, Path], tmp_path: Path
) -> None:
    """GPT-NeoX stores embed_out.weight, transformers 5 holds it as lm_head.weight; its
    vocabulary tensors (embed_in, embed_out) are padded like Llama's."""
    assert "embed_out.weight" in _weights(neox["general"])
    _in_memory_equals_on_disk(neox, method, tmp_path / "disk")


def test_task_vector_pads_the_smaller_pretrained_vocabulary(llama: dict[str, Path]) -> None:
    tau, pre, ptm = _weights(llama["tv0"]), _weights(llama["pre"]), _weights(llama["ptm0"])
    embed = "model.embed_tokens.weight"
    assert pre[embed].shape[0] == VOCAB - 1 and tau[embed].shape[0] == VOCAB
    assert torch.equal(tau[embed][: VOCAB - 1], ptm[embed][: VOCAB - 1] - pre[embed])
    assert torch.equal(tau[embed][VOCAB - 1], torch.zeros(16))


def test_default_config_recipe_builds_engine_options() -> None:
    """The schema's default resize_vocab ('refuse') is the engine's None."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    recipe = Recipe.from_config(config["merge"], seed=config["seed"])
    assert recipe.resize_vocab is None and recipe.options().resize_vocab is None
    assert Recipe.from_config({"resize_vocab": "pad"}, seed=0).options().resize_vocab == "pad"
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert Recipe.from_config(paper["merge"], seed=0).resize_vocab == "pad"


@pytest.mark.parametrize(
    ("merge", "pattern"),
    [
        ({"method": "slerp"}, r"unknown merge method 'slerp'"),
        ({"density": 1.5}, r"density=1.5 must be in \(0, 1\]"),
        ({"density": 0}, r"density=0.0 must be in \(0, 1\]"),
        ({"resize_vocab": "grow"}, r"merge.resize_vocab='grow'"),
    ],
)
def test_bad_recipe_is_named(merge: dict, pattern: str) -> None:
    with pytest.raises(MergeError, match=pattern):
        Recipe.from_config(merge, seed=0)


@pytest.mark.parametrize("method", sorted(m for m in METHODS if METHODS[m].needs_theta_pre))
def test_method_needing_theta_pre_without_it_is_named_before_reading(
    method: str, tmp_path: Path
) -> None:
    recipe = Recipe(method=method, skills=("a",))
    missing = [tmp_path / "no-such-input"]
    with pytest.raises(MergeError, match=rf"'{method}' needs theta_pre"):
        recipe.to_disk(tmp_path / "no-such-general", [(0.5,)], [tmp_path / "out"], missing, None)
    with pytest.raises(MergeError, match=rf"'{method}' needs theta_pre"):
        recipe.in_place(torch.nn.Linear(2, 2), missing, None)
    assert not (tmp_path / "out").exists()


def test_points_heuristic_and_grid() -> None:
    heuristic = Recipe(method="ties", skills=("science", "safety"))
    assert heuristic.points([0.25, 0.5]) == [("", (0.25, 0.5))]
    grid = Recipe(method="ties", skills=("science", "safety"), weighting="grid",
                  omega_grid=(0.0, 0.5))
    assert grid.points([0.25, 0.5]) == [("omega-0.00", (0.0, 0.0)), ("omega-0.50", (0.5, 0.5))]
    with pytest.raises(MergeError, match="1 heuristic ω"):
        heuristic.points([0.25])
    assert Recipe.from_params(grid.to_params()) == grid
    json.dumps(grid.to_params())  # plain data for rule params and summary.json


def test_heuristic_omegas_count_the_subsets(tmp_path: Path) -> None:
    def jsonl(name: str, rows: int) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(rows)))
        return path

    assert heuristic_omegas([jsonl("a", 3), jsonl("b", 8)], jsonl("g", 16)) == [3 / 16, 8 / 16]


def test_schema_enums_are_the_registries() -> None:
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    suites = schema["properties"]["evaluation"]["properties"]["suites"]
    assert suites["items"]["enum"] == list(SUITES) == suites["default"]
    # The skills, in the paper's order (rules/common.smk orders merges and ω columns by it).
    skills = [name for name, suite in SUITES.items() if suite.skill]
    assert skills == ["science", "safety", "coding"]


# ---- safe outputs -------------------------------------------------------------------------


@pytest.fixture
def no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals must come before any tensor is read."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tensor was read before the output was refused")

    monkeypatch.setattr(Checkpoint, "read", refuse)


def _merge(llama: dict[str, Path], out: Path) -> list[dict]:
    return merge_to_disk(
        "task_arithmetic", llama["general"], [0.5], [out], task_vectors=[llama["tv0"]],
        options=QUIET,
    )


def test_output_folder_that_is_a_file_is_refused(
    llama: dict[str, Path], tmp_path: Path, no_tensor_reads: None
) -> None:
    out = tmp_path / "out"
    out.write_text("mine")
    with pytest.raises(MergeError, match=r"output folder .*/out is a file"):
        _merge(llama, out)
    with pytest.raises(MergeError, match=r"out is a file, not a folder"):
        _merge(llama, out / "model")
    assert out.read_text() == "mine"


def test_working_directory_is_refused(
    llama: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_tensor_reads: None
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    for out in (Path("."), tmp_path, tmp_path.parent):
        with pytest.raises(MergeError, match="working directory"):
            _merge(llama, out)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_foreign_folder_is_refused(
    llama: dict[str, Path], tmp_path: Path, no_tensor_reads: None
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MergeError, match=r"not an earlier output of mtl\.merge"):
        _merge(llama, out)
    assert (out / "notes.txt").read_text() == "mine"


def test_earlier_output_is_replaced_but_not_what_the_engine_did_not_write(
    llama: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (first,) = _merge(llama, out)
    (again,) = _merge(llama, out)  # an earlier output of the engine: replaced
    assert again["files"] == first["files"]
    assert set(first["files"]) == {p.name for p in out.iterdir()}
    (out / "eval-notes.txt").write_text("mine")
    with pytest.raises(MergeError, match=r"also holds \['eval-notes.txt'\]"):
        _merge(llama, out)
    assert (out / "eval-notes.txt").read_text() == "mine"


def test_merge_output_overlapping_an_input_is_refused(
    llama: dict[str, Path], tmp_path: Path, no_tensor_reads: None
) -> None:
    for out in (llama["general"], llama["general"] / "sub", llama["tv0"], llama["tv0"].parent):
        with pytest.raises(MergeError, match="would overwrite input"):
            _merge(llama, out)


def test_task_vector_outputs_are_safe(
    llama: dict[str, Path], tmp_path: Path, no_tensor_reads: None
) -> None:
    weights = llama["pre"] / "model.safetensors"
    before = weights.read_bytes()
    with pytest.raises(MergeError, match="would overwrite input"):
        extract_task_vector(llama["pre"], llama["ptm0"], weights, resize_vocab="pad")
    assert weights.read_bytes() == before
    with pytest.raises(MergeError, match="is a folder"):
        extract_task_vector(llama["pre"], llama["ptm0"], tmp_path, resize_vocab="pad")
    other = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(2)}, other)
    with pytest.raises(MergeError, match="not an earlier task vector"):
        extract_task_vector(llama["pre"], llama["ptm0"], other, resize_vocab="pad")
    assert set(load_file(other)) == {"x"}


def test_earlier_task_vector_is_replaced(llama: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "tau.safetensors"
    first = extract_task_vector(llama["pre"], llama["ptm0"], out, resize_vocab="pad",
                                progress=False)
    again = extract_task_vector(llama["pre"], llama["ptm0"], out, resize_vocab="pad",
                                progress=False)
    assert first == again


def test_in_place_merger_is_built_from_file_names(neox: dict[str, Path]) -> None:
    model = AutoModelForCausalLM.from_pretrained(neox["general"], dtype=torch.float32)
    assert "lm_head.weight" in dict(model.named_parameters())
    merger = InPlaceMerger(model, [neox["tv0"]], options={"resize_vocab": "pad"})
    merger.apply([1.0])
    tau = _weights(neox["tv0"])["embed_out.weight"]
    general = _weights(neox["general"])["embed_out.weight"]
    assert torch.equal(model.lm_head.weight, general + tau)
