"""Input and params helpers of rules/merge.smk."""


def merge_recipe(wildcards):
    """The recipe of merge target seed-{seed}/merge-{method}-{weighting}-{skillset}."""
    return config_recipe(
        seed=wildcard_seed(wildcards),
        method=METHOD_TAGS[wildcards.method],
        skills=[skill for skill, _ in parse_skillset(wildcards.skillset)],
        weighting=wildcards.weighting,
    )


def skill_input(recipe, skill, size, seed):
    """A skill's input in the method's own view: its task vector, or its finetuned model
    (θ_D from θ_pre, θ_CFT continued from θ_G, ... : the regime the method declares)."""
    if recipe.skill_inputs == "task_vectors":
        return task_vector_path(skill, size, seed)
    return model_dir(seeded(seed, f"{recipe.spec.skill_regime}-{skill}-{size}"))


def merge_inputs(wildcards, general="theta_general"):
    """θ_G (under the name `general`), the skill inputs of the target's seed, θ_pre where the
    method needs it, and the data subsets that size the heuristic ω."""
    recipe = merge_recipe(wildcards)
    pairs = parse_skillset(wildcards.skillset)
    inputs = {
        general: THETA_G,
        recipe.skill_inputs: [
            skill_input(recipe, skill, size, wildcards.seed) for skill, size in pairs
        ],
        "skill_data": [subset_path(skill, size) for skill, size in pairs],
        "general_data": general_subset(),
    }
    if recipe.needs_theta_pre:
        inputs["theta_pre"] = THETA_PRE
    return inputs


def merge_eval_inputs(wildcards):
    """An evaluated merge loads θ_G as its model."""
    return merge_inputs(wildcards, general="model")


def merge_params(wildcards):
    return merge_recipe(wildcards).to_params()


def omega_param():
    """The paper's dataset sizes for merge.omega_sizes: paper, as a param of the merge rules;
    nothing in the default (ω from the data trained), so those jobs keep their params.
    """
    if config["merge"]["omega_sizes"] == "data":
        return {}
    return {
        "omega_sizes": lambda wc: omega_params(
            config["merge"],
            config["data"],
            [skill for skill, _ in parse_skillset(wc.skillset)],
        )
    }
