"""Input and params helpers of rules/data.smk."""


def dataset_config(dataset):
    if dataset == "general":
        return config["data"]["general"]
    return config["data"]["skills"][dataset]


def source_path(dataset):
    """The full dataset before subsetting: made by the toy world or fetched from the hub."""
    spec = dataset_config(dataset)
    if spec["source"] == "world":
        return f"results/world/{dataset}.jsonl"
    if spec["source"] == "file":
        return spec["path"]
    return f"results/sources/{dataset}.jsonl"


# What each artifact of the toy world depends on. mtl.world draws from one seeded stream, in
# this order: entities, eval suites, general mix, then the skills in world.SKILLS order; the
# corpus has its own stream. So a file depends on the counts of what is drawn before it, and
# on nothing drawn after (tests/test_reruns.py checks this against mtl.world itself).
WORLD_ORDER = ["eval", "general", *WORLD_SKILLS]
WORLD_COUNT_KEYS = {"eval": ["eval_examples"], "general": ["general_examples"]}


def dev_suite_path(skill):
    """A skill suite's development set (the toy world's; rule world_dev)."""
    return f"results/world/dev/{skill}.jsonl"


def world_params(artifact):
    """The world keys that change `artifact` (corpus, eval, general, a skill, tokenizer)."""
    world = config["world"]
    keys = {"seed": world["seed"], "entities": world["entities"]}
    if artifact == "corpus":
        return {**keys, "corpus_sentences": world["corpus_sentences"]}
    if artifact == "tokenizer":
        # Its words come from its input files, plus every word a skill family can produce.
        return keys
    if artifact not in WORLD_ORDER:
        raise ValueError(
            f"config data: dataset {artifact!r} has source 'world', but the toy world makes "
            f"only {', '.join(WORLD_ORDER[1:])}"
        )
    for drawn in WORLD_ORDER[: WORLD_ORDER.index(artifact) + 1]:
        if drawn in WORLD_SKILLS:
            keys["general_examples"] = world["general_examples"]
            keys[f"skill_ratio.{drawn}"] = world["skill_ratio"][drawn]
        else:
            keys.update({k: world[k] for k in WORLD_COUNT_KEYS[drawn]})
        if drawn == "general":
            # The general mix draws each skill's partial family after its own families.
            for skill in WORLD_SKILLS:
                share = world["general_skill_share"][skill]
                keys[f"general_skill_share.{skill}"] = share
    return keys


FETCH_KEYS = [
    "source",
    "path",
    "name",
    "split",
    "revision",
    "data_files",
    "source_field",
    "exclude_sources",
    "include_sources",
    "per_source_cap",
    "per_source_order",
    "source_delimiter",
    "load_options",
    "prompt_field",
    "response_field",
]


def fetch_params(dataset):
    """What changes a download: not the sizes drawn from it, nor the subset seed (which only
    matters to the download when a per-source cap samples rows)."""
    spec = dataset_config(dataset)
    params = {key: spec[key] for key in FETCH_KEYS if key in spec}
    if spec.get("per_source_cap"):
        params["seed"] = spec["seed"]
    return params
