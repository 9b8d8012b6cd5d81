"""Every merge method from a target on config/test.yaml, in memory and on disk; the recorded ω
against the subset sizes; bad recipes named before any job runs; merge.method driving the
tables. The runs share the session's `toy_run` and `full_run` (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from workflow import (
    TEST_CONFIG,
    TEST_SEEDS,
    clone_run,
    copy_repo,
    planned_jobs,
    seeded,
    snakemake,
)

from mtl.merge import METHODS, Recipe

pytestmark = pytest.mark.slow


def _config(workdir: Path) -> dict:
    """config.yaml with test.yaml layered on it (the keys the merges read)."""
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    for key, value in yaml.safe_load((workdir / "config/test.yaml").read_text()).items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def _rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


# Methods that reduce over a tensor's entries (sums, norms, dot products, SVDs). The jobs run
# under the config's pinned numerics (numerics.cpu_isa), this process under the machine's own,
# and their reductions round differently there: by up to 3.3e-6 on a tiny Llama (Iso-CTS),
# 0 when both sides are pinned alike. Within one process in-memory and on-disk merges are
# bit-identical for every method (test_merge.py, test_merge_recipes.py).
REDUCING = {"della", "della_linear", "nuslerp", "model_stock", "sce", "karcher", "tsv_m",
            "iso_c", "iso_cts"}


def test_every_method_runs_from_its_target_in_memory_and_on_disk(full_run, tmp_path):
    # On a copy of the whole DAG's run: the θ_CFT models WiSE-FT merges are built there already.
    run = clone_run(full_run, tmp_path / "run")
    assert set(METHODS) >= REDUCING
    ids = {name: f"merge-{method.tag}-heuristic-science-all" for name, method in METHODS.items()}
    targets = [seeded(kind, i) for i in ids.values() for kind in ("merged", "evals")]
    snakemake(run, *targets, "--cores", "2", *TEST_CONFIG)

    config = _config(run)
    omega = _rows(run / "results/data/science/all.jsonl") / _rows(
        run / "results/data/general/all.jsonl"
    )
    for name, target in ids.items():
        summary = json.loads((run / seeded("evals", target) / "summary.json").read_text())
        assert summary["recipe"]["method"] == name
        (point,) = summary["points"]
        assert point["omega"] == pytest.approx([omega])
        # The model on disk equals the in-memory merge of the same recipe at the same ω.
        # The recipe of the target's seed (DARE's drop masks).
        recipe = Recipe.from_config(config["merge"], seed=TEST_SEEDS[0], method=name,
                                    skills=["science"])
        skills = [run / (seeded("taskvectors", "science-all.safetensors")
                         if recipe.skill_inputs == "task_vectors"
                         else seeded("models", f"{recipe.spec.skill_regime}-science-all"))]
        pre = run / "results/models/pretrained" if recipe.needs_theta_pre else None
        model = AutoModelForCausalLM.from_pretrained(run / "results/models/general",
                                                     dtype=torch.float32)
        recipe.in_place(model, skills, pre).apply(point["omega"])
        model.save_pretrained(tmp_path / f"memory-{name}")
        disk = _weights(run / seeded("merged", target))
        memory = _weights(tmp_path / f"memory-{name}")
        assert disk.keys() == memory.keys()
        for tensor_name, tensor in disk.items():
            if name not in REDUCING:
                assert torch.equal(tensor, memory[tensor_name]), f"{name}: {tensor_name}"
            else:
                torch.testing.assert_close(tensor, memory[tensor_name], rtol=0, atol=1e-5,
                                           msg=f"{name}: {tensor_name}")
        card = (run / seeded("merged", target) / "README.md").read_text()
        assert f"**{name}**" in card and f"ω = {point['omega']}" in card


def test_recorded_omega_is_the_subset_sizes_for_every_skill(toy_run):
    """Each evaluated merge records the ω it applied, per skill in skillset order: |D_k|/|G|
    counted from the data files (Table 5's ω columns are read from these records)."""
    n_general = _rows(toy_run / "results/data/general/all.jsonl")
    folders = sorted(p for p in (toy_run / "results/evals").glob("seed-*/merge-ta-heuristic-*")
                     if p.is_dir())
    assert any("+" in f.name for f in folders), "no multi-skill merge to check"
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        pairs = [part.rsplit("-", 1) for part in folder.name.split("-", 3)[3].split("+")]
        expected = [_rows(toy_run / f"results/data/{skill}/{size}.jsonl") / n_general
                    for skill, size in pairs]
        assert len(set(expected)) == len(expected), "subset sizes must differ to test pairing"
        assert summary["recipe"]["skills"] == [skill for skill, _ in pairs]
        (point,) = summary["points"]
        assert point["omega"] == pytest.approx(expected, abs=1e-12), folder.name
        assert summary["heuristic_omega"] == point["omega"]


def test_merge_method_drives_the_tables(toy_run, tmp_path):
    override = tmp_path / "ties.yaml"
    override.write_text(yaml.safe_dump({"merge": {"method": "ties"}}))
    planned = planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG, str(override))
    merges = {wildcards for rule, wildcards in planned if rule == "evaluate_merge"}
    assert len(merges) == 7 * len(TEST_SEEDS)
    assert all(", method=ties," in w for w in merges)


@pytest.mark.parametrize(
    ("merge", "message"),
    [
        ({"method": "slerp"}, "'slerp' is not one of"),
        ({"density": 1.5}, "1.5 is greater than the maximum of 1"),
        ({"resize_vocab": "grow"}, "'grow' is not one of"),
    ],
)
def test_bad_recipe_is_named_before_any_job(tmp_path, merge, message):
    repo = copy_repo(tmp_path / "repo")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"merge": merge}))
    done = snakemake(repo, "-n", "results/table5.csv", "--configfile", str(bad), check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert message in output and "merge" in output, output[-2000:]
    assert "Job stats" not in output
