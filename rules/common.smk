"""Paths, resources and input helpers shared by every rule."""

import itertools
import os
import re
import sys
from pathlib import Path


def library_first(environ, library):
    """Put `library` first on PYTHONPATH, once (SLURM jobs parse this file again).

    Step programs import the library beside them, scripts/mtl. Snakemake appends the script
    folder to sys.path, after site-packages, so a copy of mtl installed in the Python environment
    (another checkout's `pip install -e .`, or a plain `pip install .`) would shadow it and jobs
    would run stale code. First on PYTHONPATH, which every job inherits, this checkout's library
    wins; mtl.stepkit.setup checks that it did. (PYTHONPATH is optional, so no `envvars:`.)
    """
    rest = environ.get("PYTHONPATH", "").split(os.pathsep)
    environ["PYTHONPATH"] = os.pathsep.join(
        [library, *(p for p in rest if p not in ("", library))]
    )


library_first(os.environ, str(Path(workflow.basedir) / "scripts"))
# The rules read the library's registries (merge methods, suites and skills), build merge
# recipes and pin the numerics with it, so this process imports the same library its jobs do.
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from mtl.suites import SUITES as SUITE_REGISTRY
from mtl.merge import METHODS, MergeError, Recipe
from mtl.stepkit import numerics_settings, pin_environment
from mtl.world import SKILLS as WORLD_SKILLS

# Every job inherits this process's environment, and torch, MKL and oneDNN read their kernel
# choices from it when they load, before a step program runs: so the numerics are pinned here,
# once per parse (SLURM jobs parse this file again, and pin again). An outside value is
# overridden on purpose (mtl.stepkit says why) and named, so the override is never silent.
NUMERICS = numerics_settings(config.get("numerics"))
for replaced in pin_environment(os.environ, NUMERICS):
    print(f"numerics: replaced the outside {replaced}", file=sys.stderr)

TOY = config["scale"] == "toy"
# The paper's order, then any others by name: merging config files may reorder the mapping,
# and skill order names merges and ω columns, so it must not follow the YAML.
PAPER_SKILLS = [name for name, suite in SUITE_REGISTRY.items() if suite.skill]
SKILLS = sorted(
    config["data"]["skills"],
    key=lambda s: (
        PAPER_SKILLS.index(s) if s in PAPER_SKILLS else len(PAPER_SKILLS),
        s,
    ),
)
SUITES = list(config["evaluation"]["suites"])
REGIMES = ["ptm", "cft", "rt", "cft-match"]
# Merge methods by their short name in targets (merge-<tag>-…), from the engine's registry.
METHOD_TAGS = {method.tag: name for name, method in METHODS.items()}


def config_recipe(**fields):
    """The config's merge recipe (a bad one is named here, before any job is planned)."""
    try:
        return Recipe.from_config(config["merge"], seed=config["seed"], **fields)
    except MergeError as err:
        raise ValueError(f"config: {err}") from None


# The config's merge method: the one the tables and figures ask for.
TABLE_METHOD = config_recipe().spec.tag


wildcard_constraints:
    skill="|".join(SKILLS),
    size="all|[0-9]+pct|n[0-9]+|pertask[0-9]+",
    regime="|".join(REGIMES),
    method="|".join(METHOD_TAGS),
    dataset="general|" + "|".join(SKILLS),
    weighting="heuristic|grid",
    skillset="[a-z0-9_]+-[a-z0-9]+(\\+[a-z0-9_]+-[a-z0-9]+)*",


def prov(path):
    """The provenance record that sits beside an artifact (a file or a folder)."""
    return f"{Path(path)}.prov.json"


def reported(path, item):
    """`path` flagged for the HTML report (`snakemake --report`), captioned by
    report/<item>.rst and filed by paper item: table<N> under Tables, figure<N> under Figures,
    anything else under Summary; so a table's CSV sits beside its plot, a figure's plot beside
    its data."""
    caption = Path(workflow.basedir) / "report" / f"{item}.rst"
    if not caption.is_file():
        raise ValueError(
            f"report: output {path} names item {item!r}, but {caption} is missing"
        )
    numbered = re.fullmatch(r"(table|figure)(\d+)", item)
    if numbered:
        kind, number = numbered.groups()
        category, subcategory = f"{kind.title()}s", f"{kind.title()} {number}"
    else:
        category, subcategory = "Summary", item.replace("_", " ").capitalize()
    return report(
        path, caption=str(caption), category=category, subcategory=subcategory
    )


def artifact(path, folder=False, report_as=None):
    """A declared output and its provenance record, as named outputs; with `report_as` (a
    report item, see `reported`), the output is in the HTML report, its record is not.
    """
    declared = directory(path) if folder else path
    if report_as:
        declared = reported(declared, report_as)
    return {"artifact": declared, "prov": prov(path)}


def resources_for(family):
    """Resources of a rule family from the config, falling back to `default`.

    When `numerics.threads` pins the intra-op thread count, no job uses more threads than that,
    so that is what each job reserves (more would idle cores that other jobs could use).
    """
    merged = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
    merged.update(config["resources"].get("default", {}))
    merged.update(config["resources"].get(family, {}))
    if NUMERICS["threads"] is not None:
        merged["threads"] = NUMERICS["threads"]
    return merged


def res(family, key):
    return resources_for(family)[key]


def scaled(family, key):
    """Memory or time that grows with each retry, so a job killed for either comes back bigger."""
    base = res(family, key)
    return lambda wildcards, attempt: base * attempt


def gpu_resources(family):
    """Only rules that ask for GPUs carry GPU keys, so the SLURM plugin adds --gpus for them."""
    spec = resources_for(family)
    extra = {}
    if spec["gpu"]:
        extra["gpu"] = spec["gpu"]
        extra["cpus_per_gpu"] = spec.get("cpus_per_gpu", spec["threads"])
        if "gpu_model" in spec:
            extra["gpu_model"] = spec["gpu_model"]
    return extra


def log_path(rule_name, *parts):
    return f"results/logs/{rule_name}/{'-'.join(parts) or rule_name}.log"


def bench_path(rule_name, *parts):
    return f"results/benchmarks/{rule_name}/{'-'.join(parts) or rule_name}.tsv"


# ---- datasets ------------------------------------------------------------------------------


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


def subset_path(dataset, size):
    return f"results/data/{dataset}/{size}.jsonl"


def general_subset():
    return subset_path("general", config["data"]["general"]["size"])


# ---- models --------------------------------------------------------------------------------


def model_dir(model_id):
    return f"results/models/{model_id}"


THETA_PRE = model_dir("pretrained")
THETA_G = model_dir("general")


def task_vector_path(skill, size):
    return f"results/taskvectors/{skill}-{size}.safetensors"


def parse_skillset(skillset):
    """'science-all+safety-n500' -> [('science', 'all'), ('safety', 'n500')]."""
    return [tuple(part.rsplit("-", 1)) for part in skillset.split("+")]


def skillset_id(pairs):
    return "+".join(f"{skill}-{size}" for skill, size in pairs)


# ---- evaluations ---------------------------------------------------------------------------


def eval_dir(model_id):
    return f"results/evals/{model_id}"


def merge_id(method, weighting, pairs):
    return f"merge-{method}-{weighting}-{skillset_id(pairs)}"


def first_size(skill):
    return config["data"]["skills"][skill]["sizes"][0]


def table5_merges():
    """Table 5's rows: each skill alone, every pair, and all skills, at the heuristic ω."""
    pairs = [(skill, first_size(skill)) for skill in SKILLS]
    combos = [
        c for k in range(1, len(pairs) + 1) for c in itertools.combinations(pairs, k)
    ]
    return [merge_id(TABLE_METHOD, "heuristic", list(combo)) for combo in combos]


# ---- rule inputs and params ----------------------------------------------------------------


def train_params(kind):
    """What changes a trained model: hyper-parameters, seed, dtype and the numerics.

    Not `checkpoint_every`: a resumed run ends in the same bytes as an uninterrupted one, so how
    often it checkpoints changes no output (train.py reads it from the config).
    """
    return {
        "train": config["training"][kind],
        "seed": config["seed"],
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


def table3_inputs(wildcards):
    """Per skill (first size): CFT and RT models and evals, and PTM at heuristic and grid ω."""
    pairs = [(skill, first_size(skill)) for skill in SKILLS]
    ids = {
        regime: [f"{regime}-{skill}-{size}" for skill, size in pairs]
        for regime in ("cft", "rt", "ptm")
    }
    return {
        "baseline": eval_dir("general"),
        "cft": [eval_dir(i) for i in ids["cft"]],
        "rt": [eval_dir(i) for i in ids["rt"]],
        "heuristic": [
            eval_dir(merge_id(TABLE_METHOD, "heuristic", [p])) for p in pairs
        ],
        "grid": [eval_dir(merge_id(TABLE_METHOD, "grid", [p])) for p in pairs],
        **{f"{regime}_model": [model_dir(i) for i in ids[regime]] for regime in ids},
    }


def regime_inputs(wildcards):
    """PTM and RT start from θ_pre, CFT from θ_G; RT and CFT-match also see general data."""
    skill_data = subset_path(wildcards.skill, wildcards.size)
    inputs = {"init": THETA_G if wildcards.regime.startswith("cft") else THETA_PRE}
    inputs["data"] = skill_data
    if wildcards.regime in ("rt", "cft-match"):
        inputs["general"] = general_subset()
    return inputs


def merge_recipe(wildcards):
    """The recipe of merge target merge-{method}-{weighting}-{skillset}."""
    return config_recipe(
        method=METHOD_TAGS[wildcards.method],
        skills=[skill for skill, _ in parse_skillset(wildcards.skillset)],
        weighting=wildcards.weighting,
    )


def skill_input(recipe, skill, size):
    """A skill's input in the method's own view: its task vector, or its finetuned model
    (θ_D from θ_pre, or θ_CFT continued from θ_G, as the method declares)."""
    if recipe.skill_inputs == "task_vectors":
        return task_vector_path(skill, size)
    regime = "cft" if recipe.spec.skills_from == "general" else "ptm"
    return model_dir(f"{regime}-{skill}-{size}")


def merge_inputs(wildcards, general="theta_general"):
    """θ_G (under the name `general`), the skill inputs, θ_pre where the method needs it, and
    the data subsets that size the heuristic ω."""
    recipe = merge_recipe(wildcards)
    pairs = parse_skillset(wildcards.skillset)
    inputs = {
        general: THETA_G,
        recipe.skill_inputs: [
            skill_input(recipe, skill, size) for skill, size in pairs
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


def eval_params():
    """What changes an evaluation: the tasks and generation settings, seed and numerics."""
    return {
        "suites": SUITES,
        "tasks": config["evaluation"]["tasks"],
        "batch_size": config["evaluation"]["batch_size"],
        "max_gen_toks": config["evaluation"]["max_gen_toks"],
        "limit": config["evaluation"]["limit"],
        # Only when set, so configs without it keep their jobs' params (no reruns).
        **(
            {"gen_kwargs": config["evaluation"]["gen_kwargs"]}
            if config["evaluation"]["gen_kwargs"]
            else {}
        ),
        "include_path": config["evaluation"]["include_path"],
        "sandbox": config["evaluation"]["sandbox"],
        "seed": config["seed"],
        "numerics": NUMERICS,
    }


def suite_data():
    """The toy suites read the world's eval files; paper suites are lm-eval's own tasks."""
    return [f"results/world/eval/{suite}.jsonl" for suite in SUITES] if TOY else []


def paper_eval_inputs():
    """Judges and benchmark files of the paper tasks, as inputs of evaluation jobs."""
    if TOY:
        return {}
    evaluation = config["evaluation"]
    return {
        "judges": [f"results/judges/{key}" for key in evaluation["judges"]],
        "evaldata": [
            f"results/evaldata/{name}.jsonl" for name in evaluation["benchmarks"]
        ],
    }
