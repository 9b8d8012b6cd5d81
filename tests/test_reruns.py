"""Reruns of only what changed: each rule's params are exactly what changes its output.

The toy world is one rule per artifact (rules/data.smk) whose params are the world keys that
artifact depends on; a hub download's params are only what changes that download; how often
training checkpoints is no training param. Dry runs after a built workflow plan exactly the jobs
an edit affects (the test config's real build, and the paper config's DAG marked as built).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from workflow import (
    TEST_CONFIG,
    TEST_SEEDS,
    background_build,
    copy_repo,
    planned_jobs,
    snakemake,
)

from mtl.io import write_json
from mtl.provenance import hash_path, is_sidecar, sidecar
from mtl.world import WorldSpec, build_world

# Small, so the world builds in milliseconds; its keys as config/schema.yaml spells them.
SPEC = WorldSpec(seed=3, entities=12, corpus_sentences=200, general_examples=60,
                 skill_ratio={"science": 0.22, "safety": 0.24, "coding": 0.57},
                 eval_examples=8,
                 general_skill_share={"science": 0.1, "safety": 0.05, "coding": 0.1})
# What rules/common/data.smk's world_params gives each artifact (beside seed and entities, which
# every artifact depends on). A part drawn later in mtl.world's one stream depends on the
# counts of everything drawn before it.
SHARES = {f"general_skill_share.{skill}" for skill in ("science", "safety", "coding")}
DEPENDS = {
    "corpus": {"corpus_sentences"},
    "eval": {"eval_examples"},
    "general": {"eval_examples", "general_examples", *SHARES},
    "science": {"eval_examples", "general_examples", *SHARES, "skill_ratio.science"},
    "safety": {"eval_examples", "general_examples", *SHARES, "skill_ratio.science",
               "skill_ratio.safety"},
    "coding": {"eval_examples", "general_examples", *SHARES, "skill_ratio.science",
               "skill_ratio.safety", "skill_ratio.coding"},
}


def _parts(spec: WorldSpec) -> dict[str, list]:
    world = build_world(spec)
    parts = {name: world[name] for name in DEPENDS if name != "eval"}
    parts["eval"] = [world[k] for k in sorted(world) if k.startswith("eval_")]
    return parts


def _changed(key: str) -> WorldSpec:
    if "." in key:  # a per-skill key: skill_ratio.<skill>, general_skill_share.<skill>
        group, skill = key.split(".", 1)
        values = getattr(SPEC, group)
        # A zero share (safety's) grows to 0.02: 1.5 × 0 would change nothing.
        return dataclasses.replace(SPEC, **{group: {**values, skill: values[skill] * 1.5 or 0.02}})
    return dataclasses.replace(SPEC, **{key: getattr(SPEC, key) + 7})


@pytest.mark.parametrize("key", sorted(set().union(*DEPENDS.values())))
def test_a_world_key_changes_exactly_the_artifacts_that_list_it(key: str) -> None:
    before, after = _parts(SPEC), _parts(_changed(key))
    changed = {name for name in DEPENDS if before[name] != after[name]}
    listed = {name for name, keys in DEPENDS.items() if key in keys}
    if key in SHARES:
        # A share moves rows between G's families, whose draws cost nearly the same number of
        # random words, so the stream after G can fall back into step (here it does for the
        # science and safety shares): D may or may not change, and world_params lists it.
        assert "general" in changed and changed <= listed
    else:
        assert changed == listed


WORLD_RULES = {"corpus": "world_corpus", "eval": "world_eval"}


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(set().union(*DEPENDS.values())))
def test_the_workflow_replans_exactly_the_world_artifacts_a_key_changes(toy_run, tmp_path, key):
    """The same table, against the workflow's params: a key edit plans exactly those world jobs
    (and the tokenizer when a file it reads is rebuilt)."""
    world = yaml.safe_load((toy_run / "config/test.yaml").read_text())["world"]
    defaults = yaml.safe_load((toy_run / "config/config.yaml").read_text())["world"]
    if "." in key:
        group, skill = key.split(".", 1)
        edit = {group: {skill: defaults[group][skill] * 1.5 or 0.02}}
    else:
        edit = {key: world[key] + 7}
    override = tmp_path / "world.yaml"
    override.write_text(yaml.safe_dump({"world": edit}))
    planned = {
        (rule, wildcards)
        for rule, wildcards in planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG,
                                            str(override))
        if rule.startswith("world_")
    }
    expected = {
        (WORLD_RULES.get(name, "world_dataset"),
         "" if name in WORLD_RULES else f"dataset={name}")
        for name, keys in DEPENDS.items() if key in keys
    }
    if {"corpus", "eval", "general"} & {name for name, keys in DEPENDS.items() if key in keys}:
        expected.add(("world_tokenizer", ""))
    assert planned == expected


# ---- dry runs after a real build of the test config -------------------------------------------

CODING_MERGES = ["coding-all", "science-all+coding-all", "safety-all+coding-all",
                 "science-all+safety-all+coding-all"]


@pytest.mark.slow
def test_nothing_changed_plans_nothing_and_the_parser_is_not_blind(toy_run) -> None:
    assert planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG) == set()
    # The same parser sees a forced job: an empty plan above is Snakemake's, not a missed match.
    forced = planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG, "--forcerun", "table5")
    assert forced == {("table5", "")}


@pytest.mark.slow
def test_a_coding_ratio_edit_plans_exactly_coding_and_its_dependents(toy_run, tmp_path) -> None:
    world = yaml.safe_load((toy_run / "config/config.yaml").read_text())["world"]
    override = tmp_path / "coding-ratio.yaml"
    ratio = world["skill_ratio"]["coding"] + 0.1
    override.write_text(yaml.safe_dump({"world": {"skill_ratio": {"coding": ratio}}}))
    planned = planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG, str(override))
    assert planned == {
        ("world_dataset", "dataset=coding"),
        ("subset", "dataset=coding, size=all"),
        *{job for seed in TEST_SEEDS for job in (
            ("train_regime", f"seed={seed}, regime=ptm, skillset=coding-all"),
            ("task_vector", f"seed={seed}, skill=coding, size=all"),
            *{("evaluate_merge", f"seed={seed}, method=ta, weighting=heuristic, skillset={m}")
              for m in CODING_MERGES},
        )},
        ("table5", ""),
    }


@pytest.mark.slow
def test_checkpoint_every_plans_nothing(toy_run, tmp_path) -> None:
    override = tmp_path / "checkpoints.yaml"
    override.write_text(yaml.safe_dump({"training": {"checkpoint_every": 3}}))
    assert planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG, str(override)) == set()


# ---- dry runs at paper scale, offline: the DAG marked as built with `--touch` ----------------

PAPER = ["--configfile", "config/paper.yaml"]
_OUTPUT = re.compile(r"^\s+output: (.*)$")


@background_build
def paper_dag(folder: Path) -> Path:
    """config/paper.yaml's DAG to table 5 with every output a placeholder Snakemake recorded
    as built (`--touch --forceall` stores each job's params), without a hub or a GPU. Each
    placeholder has a provenance record, as the workflow's outputs do: a path without one is
    never taken as built (rules/outputs.smk). Built in the background from the start of the
    session (tests/workflow.py)."""
    repo = copy_repo(folder / "repo")
    plan = snakemake(repo, "-n", "results/table5.csv", *PAPER)
    outputs = [out for line in plan.stdout.splitlines() if (m := _OUTPUT.match(line))
               for out in m.group(1).split(", ")]
    assert any(o.startswith("results/sources/") for o in outputs), plan.stdout[-3000:]
    artifacts = [out for out in outputs if not is_sidecar(out)]
    for out in artifacts:
        path = repo / out
        if Path(out).suffix in {".jsonl", ".json", ".csv", ".safetensors"}:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("placeholder\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
        kind = "dir" if path.is_dir() else "file"
        write_json(sidecar(path), {"schema": 1, "path": out, "kind": kind, "inputs": {},
                                   "hash": hash_path(path), **({"manifest": {}} if kind == "dir"
                                                               else {})})
    snakemake(repo, "--touch", "--forceall", "--cores", "1", "results/table5.csv", *PAPER)
    assert planned_jobs(repo, "results/table5.csv", *PAPER) == set()
    return repo


@pytest.mark.slow
def test_paper_scale_adding_a_coding_size_trains_only_that_size(paper_dag, tmp_path) -> None:
    coding = yaml.safe_load((paper_dag / "config/paper.yaml").read_text())["data"]["skills"][
        "coding"]
    override = tmp_path / "coding-size.yaml"
    override.write_text(yaml.safe_dump(
        {"data": {"skills": {"coding": {**coding, "sizes": [*coding["sizes"], "n500"]}}}}))
    # Paper scale runs one seed (config/paper.yaml).
    (seed,) = yaml.safe_load((paper_dag / "config/paper.yaml").read_text())["seeds"]
    merge = f"results/evals/seed-{seed}/merge-ta-heuristic-coding-n500"
    planned = planned_jobs(paper_dag, "results/table5.csv", merge, *PAPER, str(override))
    # No re-download of coding, no retraining of its first size, table 5 (first sizes) untouched.
    assert planned == {
        ("subset", "dataset=coding, size=n500"),
        ("train_regime", f"seed={seed}, regime=ptm, skillset=coding-n500"),
        ("task_vector", f"seed={seed}, skill=coding, size=n500"),
        ("evaluate_merge", f"seed={seed}, method=ta, weighting=heuristic, skillset=coding-n500"),
    }


@pytest.mark.slow
def test_paper_scale_checkpoint_every_plans_nothing(paper_dag, tmp_path) -> None:
    override = tmp_path / "checkpoints.yaml"
    override.write_text(yaml.safe_dump({"training": {"checkpoint_every": 17}}))
    assert planned_jobs(paper_dag, "results/table5.csv", *PAPER, str(override)) == set()


@pytest.mark.slow
def test_paper_scale_a_download_key_refetches_that_dataset(paper_dag, tmp_path) -> None:
    """The other direction: what does change a download still plans it (and what follows)."""
    coding = yaml.safe_load((paper_dag / "config/paper.yaml").read_text())["data"]["skills"][
        "coding"]
    override = tmp_path / "revision.yaml"
    override.write_text(yaml.safe_dump(
        {"data": {"skills": {"coding": {**coding, "revision": "0123abc"}}}}))
    planned = planned_jobs(paper_dag, "results/table5.csv", *PAPER, str(override))
    assert ("fetch_dataset", "dataset=coding") in planned
    assert not any(w.startswith("dataset=science") or "skill=science" in w
                   or (rule == "train_regime" and "skillset=science" in w)
                   for rule, w in planned)


@pytest.mark.slow
def test_the_tokenizer_knows_every_word_of_the_skill_data_it_does_not_read(toy_run) -> None:
    """world_tokenizer reads no skill dataset (so their sizes do not change it): the words the
    skill families can produce must still all be in it."""
    vocab = json.loads((toy_run / "results/world/tokenizer/tokenizer.json").read_text())[
        "model"]["vocab"]
    for skill in ("science", "safety", "coding"):
        rows = (toy_run / f"results/world/{skill}.jsonl").read_text().splitlines()
        words = {w for row in rows for m in json.loads(row)["messages"]
                 for w in m["content"].split()}
        assert words <= vocab.keys(), f"{skill}: {sorted(words - vocab.keys())[:10]}"
