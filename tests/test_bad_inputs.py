"""A sweep of bad inputs: for each kind of input a user provides (config keys, data files, model
folders, task vectors, output paths), one malformed case and the error it must give, naming the
key, file, row or tensor, with nothing built before lost. docs/testing.md lists the cases; the
same inputs through Snakemake are in the slow tests it names."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from transformers import LlamaConfig, LlamaForCausalLM
from workflow import REPO

from mtl.chat import check_rows
from mtl.io import read_jsonl
from mtl.merge import MergeError, Recipe, extract_task_vector, merge_to_disk
from mtl.provenance import Step, sidecar
from mtl.replacing import ForeignOutputError, check_replaceable
from mtl.subsets import select

pytestmark = pytest.mark.filterwarnings("ignore:numpy.core is deprecated:DeprecationWarning")

QUIET = {"progress": False}
TINY = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=16, tie_word_embeddings=False)
Q = "model.layers.0.self_attn.q_proj.weight"
ROW = {"id": "a", "messages": [{"role": "user", "content": "q"},
                               {"role": "assistant", "content": "a"}]}


def _model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(vocab_size=32, **TINY)).save_pretrained(path)
    return path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """θ_pre, θ_G, θ_D, τ_D, and a merged model built from them: what a bad input must not
    cost."""
    root = tmp_path_factory.mktemp("built")
    _model(root / "pre", 0)
    _model(root / "general", 1)
    _model(root / "d", 2)
    extract_task_vector(root / "pre", root / "d", root / "tau.safetensors", progress=False)
    merge_to_disk("task_arithmetic", root / "general", [0.5], [root / "merged"],
                  task_vectors=[root / "tau.safetensors"], options=QUIET)
    return root


def _config_with(override: dict) -> Callable[[Path], None]:
    def call(root: Path) -> None:
        config = yaml.safe_load((REPO / "config/config.yaml").read_text())
        for key, value in override.items():
            config[key] = {**config[key], **value}
        validate(config, str(REPO / "config/schema.yaml"))
    return call


def _data_file(lines: list[str], size: str = "all") -> Callable[[Path], None]:
    def call(root: Path) -> None:
        path = root / "mine.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        rows, _ = check_rows(read_jsonl(path, required=("messages",)), str(path), "toy")
        select(rows, size, seed=1, origin=f"{path} (dataset science, data.skills.science.sizes)")
    return call


def _bad_model(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    """Merge θ_G with a copy of θ_D that `edit` broke, into the merged model's folder."""
    def call(root: Path) -> None:
        bad = root / "bad"
        bad.mkdir(exist_ok=True)
        for file in (root / "d").iterdir():
            (bad / file.name).write_bytes(file.read_bytes())
        edit(bad)
        merge_to_disk("task_arithmetic", root / "general", [0.5], [root / "merged"],
                      theta_pre=root / "pre", finetuned=[bad], options=QUIET)
    return call


def _bad_tensor(path: Path, name: str, value: torch.Tensor) -> None:
    tensors = load_file(path)
    tensors[name] = value
    save_file(tensors, path, metadata={"format": "pt"})


def _bad_task_vector(root: Path) -> None:
    bad = root / "bad.safetensors"
    tensors = load_file(root / "tau.safetensors")
    tensors[Q] = torch.zeros(3, 5)
    save_file(tensors, bad, metadata={"mtl_kind": "task_vector"})
    merge_to_disk("task_arithmetic", root / "general", [0.5], [root / "merged"],
                  task_vectors=[bad], options=QUIET)


def _users_file_in_output(root: Path) -> None:
    """A built (recorded) output folder holding a file the user put there."""
    out = root / "results" / "model"
    with Step("build", {}, {"out": [str(out)], "prov": [str(sidecar(out))]}, {}, {}):
        out.mkdir(parents=True)
        (out / "weights.bin").write_bytes(b"w")
    (out / "notes.txt").write_text("mine")
    check_replaceable([out], "no job was started")


def _folder_by_hand_at_output(root: Path) -> None:
    out = root / "results" / "byhand"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    merge_to_disk("task_arithmetic", root / "general", [0.5], [out],
                  task_vectors=[root / "tau.safetensors"], options=QUIET)


@dataclass(frozen=True)
class Case:
    call: Callable[[Path], None]
    error: type[Exception]
    names: str  # what the message must name: the key, file, row or tensor
    also: str = ""  # and, elsewhere in it


CASES = {
    # config keys (validated by the Snakefile before any job is planned)
    "config-key-of-wrong-type": Case(
        _config_with({"training": {"finetune": {"lr": "fast", "batch_size": 8, "epochs": 1}}}),
        WorkflowError, "['finetune']['lr']"),
    # (the merge section, by the method registry, as rules/common.smk does)
    "config-merge-method-unknown": Case(
        lambda root: Recipe.from_config({"method": "slerp"}, seed=1), MergeError,
        "config merge: unknown merge method 'slerp'"),
    # data files (the subset step, whatever the source)
    "data-line-not-json": Case(_data_file([json.dumps(ROW), "{not json"]), ValueError,
                               "mine.jsonl:2"),
    "data-row-without-messages": Case(_data_file([json.dumps({"id": "x"})]), ValueError,
                                      "mine.jsonl:1: row is missing field(s) messages"),
    "data-tool-turn": Case(
        _data_file([json.dumps(ROW), json.dumps({"messages": [
            {"role": "tool", "content": "{}"}, *ROW["messages"]]})]),
        ValueError, "mine.jsonl:2: message 1 has role 'tool'"),
    "data-pertask-without-tasks": Case(_data_file([json.dumps(ROW)] * 4, "pertask2"),
                                       ValueError, "(dataset science, data.skills.science.sizes)"
                                       " has no task field 'family'"),
    # model folders (inputs of merges, task vectors, training)
    "model-nan-tensor": Case(
        _bad_model(lambda d: _bad_tensor(d / "model.safetensors", Q, torch.full((16, 16),
                                                                                 float("nan")))),
        MergeError, f"tensor '{Q}' contains NaN"),
    "model-config-of-another-architecture": Case(
        _bad_model(lambda d: (d / "config.json").write_text(json.dumps(
            {**json.loads((d / "config.json").read_text()), "model_type": "mistral"}))),
        MergeError, "config.json has model_type='mistral'"),
    "model-pickle-checkpoint": Case(
        _bad_model(lambda d: (torch.save(load_file(d / "model.safetensors"),
                                         d / "pytorch_model.bin"),
                              (d / "model.safetensors").unlink())),
        MergeError, "pytorch_model.bin: pickle checkpoints are refused"),
    # task vectors
    "task-vector-tensor-of-wrong-shape": Case(
        _bad_task_vector, MergeError, f"tensor '{Q}' has shape [3, 5] in task_vectors[0]",
        "bad.safetensors"),
    # output paths
    "output-holds-a-users-file": Case(_users_file_in_output, ForeignOutputError,
                                      "results/model/notes.txt"),
    "output-folder-made-by-hand": Case(_folder_by_hand_at_output, MergeError,
                                       "byhand is not empty and not an earlier output"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_named_and_nothing_built_is_lost(
    case: str, built: Path, tmp_path: Path
) -> None:
    root = tmp_path / "run"
    root.mkdir()
    for name in ("pre", "general", "d", "merged", "tau.safetensors"):
        source = built / name
        if source.is_dir():
            for file in source.iterdir():
                (root / name).mkdir(exist_ok=True)
                (root / name / file.name).write_bytes(file.read_bytes())
        else:
            (root / name).write_bytes(source.read_bytes())
    before = copy.deepcopy(_snapshot(root))
    with pytest.raises(CASES[case].error) as caught:
        CASES[case].call(root)
    assert CASES[case].names in str(caught.value), str(caught.value)
    assert CASES[case].also in str(caught.value), str(caught.value)
    after = _snapshot(root)
    lost = {path for path in before if after.get(path) != before[path]}
    assert not lost, f"changed or deleted by a failed run: {sorted(lost)}"
