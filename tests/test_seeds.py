"""Seeds through the DAG (dry runs of config/test.yaml): every seed trains, merges and
evaluates its own; θ_pre and θ_G are trained once; `all` plans every table and figure."""

from __future__ import annotations

import pytest
from workflow import TEST_CONFIG, TEST_SEEDS, copy_repo, planned_jobs

TABLES = ["table2", "table3", "table4", "table5", "table6",
          "figure1", "figure2", "figure3", "figure4", "figure5", "all_results", "claims"]
ALL_SKILLS = "science-all+safety-all+coding-all"


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> set[tuple[str, str]]:
    repo = copy_repo(tmp_path_factory.mktemp("seeds") / "repo")
    return planned_jobs(repo, *TEST_CONFIG)


def _seeds_of(plan: set[tuple[str, str]], rule: str, rest: str) -> set[int]:
    """The seeds at which `rule` is planned with wildcards ending in `rest`."""
    return {int(w.split(",")[0].removeprefix("seed=")) for r, w in plan
            if r == rule and w.endswith(rest)}


def test_all_plans_every_table_and_figure_once(plan):
    assert sorted(rule for rule, _ in plan if rule in TABLES) == sorted(TABLES)


def test_theta_pre_and_theta_g_are_trained_once_and_shared(plan):
    shared = sorted(rule for rule, _ in plan if rule in ("pretrain", "train_general"))
    assert shared == ["pretrain", "train_general"]
    assert ("evaluate_model", "model=general") in plan


@pytest.mark.parametrize(("rule", "rest"), [
    # Table 3/5's θ_D, Table 4's CFT and RT on every skill at once, Figure 2's CFT-match.
    ("train_regime", "regime=ptm, skillset=science-all"),
    ("train_regime", f"regime=cft, skillset={ALL_SKILLS}"),
    ("train_regime", f"regime=rt, skillset={ALL_SKILLS}"),
    ("train_regime", "regime=cft-match, skillset=science-all"),
    # Table 2's data-size sweep.
    ("train_regime", "regime=rt, skillset=science-50pct"),
    ("task_vector", "skill=coding, size=all"),
    # Table 6's methods, Figure 2's WiSE-FT from CFT-match, Figure 3's linear sweep.
    ("evaluate_merge", f"method=ties, weighting=heuristic, skillset={ALL_SKILLS}"),
    ("evaluate_merge", "method=wiseftmatch, weighting=grid, skillset=science-all"),
    ("evaluate_merge", "method=linear, weighting=grid, skillset=coding-all"),
    # Table 6's merge of a skill alone; Table 3's ω grid on the development set.
    ("evaluate_merge", "method=ties, weighting=heuristic, skillset=safety-all"),
    ("evaluate_dev", "method=ta, weighting=grid, skillset=coding-all"),
])
def test_every_seed_trains_merges_and_evaluates_its_own(plan, rule, rest):
    assert _seeds_of(plan, rule, rest) == set(TEST_SEEDS)


def test_a_seeded_evaluation_is_of_that_seeds_model(plan):
    evaluated = {w for r, w in plan if r == "evaluate_model"}
    for seed in TEST_SEEDS:
        assert f"model=seed-{seed}/cft-{ALL_SKILLS}" in evaluated


def test_test_config_runs_more_than_one_seed():
    # The spread over seeds is part of every table: CI must exercise it.
    assert len(TEST_SEEDS) >= 2 and len(set(TEST_SEEDS)) == len(TEST_SEEDS)
