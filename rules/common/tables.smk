"""Input and params helpers of rules/tables.smk."""

import itertools


def first_size(skill):
    """The size every table but Table 2 (the data-size sweep) uses: the first listed."""
    return config["data"]["skills"][skill]["sizes"][0]


def main_pairs(skills=None):
    """(skill, first size) of every skill (or of `skills`), in paper order."""
    return [
        (skill, first_size(skill)) for skill in (SKILLS if skills is None else skills)
    ]


def table5_merges():
    """Table 5's rows: each skill alone, every pair, and all skills, at the heuristic ω."""
    pairs = main_pairs()
    combos = [
        c for k in range(1, len(pairs) + 1) for c in itertools.combinations(pairs, k)
    ]
    return [merge_id(TABLE_METHOD, "heuristic", list(combo)) for combo in combos]


# Every table and figure rule takes `evals` (evaluation folders, every seed) and `models`
# (trained model folders whose training records give the steps), and its step program reads
# them with mtl.results.collect. θ_G's evaluation and model are shared by the seeds.


def tag(name):
    """A merge method's tag in targets, by its registry name."""
    return METHODS[name].tag


def seeded_evals(ids):
    return [eval_dir(seeded(seed, i)) for seed in SEEDS for i in ids]


def seeded_models(ids):
    return [model_dir(seeded(seed, i)) for seed in SEEDS for i in ids]


def table_inputs(eval_ids, model_ids=()):
    """θ_G's evaluation and model, and the given seeded evaluations and models (every seed)."""
    return {
        "evals": [eval_dir("general"), *seeded_evals(eval_ids)],
        "models": [THETA_G, *seeded_models(model_ids)],
    }


def regime_ids(regimes, pairs):
    return [f"{regime}-{skill}-{size}" for regime in regimes for skill, size in pairs]


def ptm_models(pairs):
    """The θ_D a merge of `pairs` is made from (their steps are the merge's cost)."""
    return regime_ids(["ptm"], pairs)


def table2_inputs(wildcards):
    """Table 2 (science across data sizes): CFT, RT and PTM (heuristic ω and the ω grid) at
    every size of data.skills.science.sizes."""
    pairs = [("science", size) for size in config["data"]["skills"]["science"]["sizes"]]
    merges = [
        merge_id(TABLE_METHOD, w, [p]) for p in pairs for w in ("heuristic", "grid")
    ]
    return table_inputs(
        regime_ids(["cft", "rt"], pairs) + merges,
        regime_ids(["cft", "rt", "ptm"], pairs),
    )


def table3_inputs(wildcards):
    """Table 3: per skill (first size), CFT and RT, and PTM at the heuristic and grid ω."""
    pairs = main_pairs()
    merges = [
        merge_id(TABLE_METHOD, w, [p]) for p in pairs for w in ("heuristic", "grid")
    ]
    trained = regime_ids(["cft", "rt"], pairs)
    return table_inputs(trained + merges, trained + ptm_models(pairs))


def table4_inputs(wildcards):
    """Table 4 (all skills at once): PTM at the heuristic ω, CFT and RT on D_1 ∪ … ∪ D_K."""
    pairs = main_pairs()
    together = skillset_id(pairs)
    multi = [f"cft-{together}", f"rt-{together}"]
    return table_inputs(
        [merge_id(TABLE_METHOD, "heuristic", pairs), *multi],
        [*multi, *ptm_models(pairs)],
    )


def table5_inputs(wildcards):
    """Table 5: each skill, every pair and all skills merged at the heuristic ω."""
    return table_inputs(table5_merges(), ptm_models(main_pairs()))


# Table 6: the three-skill merge by each method at the heuristic ω (density: merge.density).
TABLE6_METHODS = ["task_arithmetic", "ties", "dare", "dare_ties"]


def table6_inputs(wildcards):
    pairs = main_pairs()
    return table_inputs(
        [merge_id(tag(name), "heuristic", pairs) for name in TABLE6_METHODS],
        ptm_models(pairs),
    )


def grid_ids(names, pairs):
    """One-skill ω sweeps of each method, per skill."""
    return [merge_id(tag(name), "grid", [p]) for p in pairs for name in names]


def figure1_inputs(wildcards):
    """Figure 1: the table method's ω sweep per skill, and the heuristic merge it marks."""
    pairs = main_pairs()
    sweeps = grid_ids([METHOD_TAGS[TABLE_METHOD]], pairs)
    heuristic = [merge_id(TABLE_METHOD, "heuristic", [p]) for p in pairs]
    return table_inputs(sweeps + heuristic)


# Figure 2 (the paper's is science): WiSE-FT from θ_CFT on D against θ_CFT on D + as much G.
FIGURE2_SKILLS = ["science"]
FIGURE2_METHODS = ["wise_ft", "wise_ft_match"]
# Figures 3 and 4: the three PTM-style methods along ω (figure 4: safety, General vs ExRef).
SWEEP_METHODS = ["task_arithmetic", "linear", "wise_ft"]


def figure2_inputs(wildcards):
    pairs = main_pairs([s for s in FIGURE2_SKILLS if s in SKILLS])
    return table_inputs(
        grid_ids(FIGURE2_METHODS, pairs), regime_ids(["cft", "cft-match"], pairs)
    )


def figure3_inputs(wildcards):
    return table_inputs(grid_ids(SWEEP_METHODS, main_pairs()))


def figure4_inputs(wildcards):
    return table_inputs(grid_ids(SWEEP_METHODS, main_pairs(["safety"])))


def figure5_inputs(wildcards):
    """Figure 5: every model trained on safety data: CFT, RT (safety alone and all skills)
    and PTM (the heuristic ω and the grid, safety alone and the all-skill merge)."""
    safety = main_pairs(["safety"])
    together = skillset_id(main_pairs())
    models = regime_ids(["cft", "rt"], safety) + [f"cft-{together}", f"rt-{together}"]
    merges = [merge_id(TABLE_METHOD, w, safety) for w in ("heuristic", "grid")]
    merges.append(merge_id(TABLE_METHOD, "heuristic", main_pairs()))
    return table_inputs(models + merges, models + ptm_models(main_pairs()))


# Which tables and figures this config can make: Table 2 and Figure 2 need science, Figures 4
# and 5 safety (the paper's skills); the rest any skills.
TABLE_INPUTS = {
    "table2": table2_inputs,
    "table3": table3_inputs,
    "table4": table4_inputs,
    "table5": table5_inputs,
    "table6": table6_inputs,
    "figure1": figure1_inputs,
    "figure2": figure2_inputs,
    "figure3": figure3_inputs,
    "figure4": figure4_inputs,
    "figure5": figure5_inputs,
}
NEEDS_SKILL = {
    "table2": "science",
    "figure2": "science",
    "figure4": "safety",
    "figure5": "safety",
}
TABLES = [name for name in TABLE_INPUTS if NEEDS_SKILL.get(name, SKILLS[0]) in SKILLS]


def all_results_inputs(wildcards):
    """Every evaluation (and trained model) that a table or figure of this config reads."""
    evals, models = {}, {}
    for name in TABLES:
        inputs = TABLE_INPUTS[name](wildcards)
        evals.update(dict.fromkeys(inputs["evals"]))
        models.update(dict.fromkeys(inputs["models"]))
    return {"evals": list(evals), "models": list(models)}
