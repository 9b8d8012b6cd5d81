"""Input and params helpers of rules/train.smk."""


def train_params(kind, seed=None):
    """What changes a trained model: hyper-parameters, seed, dtype and the numerics.

    Not `checkpoint_every`: a resumed run ends in the same bytes as an uninterrupted one, so how
    often it checkpoints changes no output (train.py reads it from the config). `seed`: the
    base seed (θ_pre, θ_G) unless given (a seeded rule passes wildcard_seed).
    """
    return {
        "train": config["training"][kind],
        "seed": config["seed"] if seed is None else seed,
        "dtype": config["model"]["dtype"],
        "numerics": NUMERICS,
    }


def finetune_params():
    """Paper scale: the chat format and one FSDP2 worker per GPU (or per CPU process)."""
    if TOY:
        return {}
    gpus = res("finetune", "gpu")
    parallel = dict(config["training"]["parallel"])
    if gpus:
        parallel["processes"] = gpus
    return {"chat_template": config["model"]["chat_template"], "parallel": parallel}


def regime_inputs(wildcards):
    """The regime's start (θ_pre or θ_G, mtl.regimes), its skill data and, where it trains on
    general data too, the general subset. A skillset of several skills trains on the union of
    their subsets (Table 4's CFT, RT).
    """
    regime = REGIME_REGISTRY[wildcards.regime]
    inputs = {"init": THETA_G if regime.init == "general" else THETA_PRE}
    inputs["data"] = [
        subset_path(skill, size) for skill, size in parse_skillset(wildcards.skillset)
    ]
    if regime.general != "none":
        inputs["general"] = general_subset()
    return inputs
