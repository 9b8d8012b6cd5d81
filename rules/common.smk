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
# Each seed trains its own skill models, task vectors and merges (results/*/seed-<N>/);
# θ_pre and θ_G are trained once, by the base `seed`, and shared (as the paper's are).
SEEDS = list(config["seeds"])
# Merge methods by their short name in targets (merge-<tag>-…), from the engine's registry.
METHOD_TAGS = {method.tag: name for name, method in METHODS.items()}


def config_recipe(seed=None, **fields):
    """The config's merge recipe at `seed` (DARE's drop masks; default the base seed). A bad
    recipe is named here, before any job is planned."""
    try:
        return Recipe.from_config(
            config["merge"], seed=config["seed"] if seed is None else seed, **fields
        )
    except MergeError as err:
        raise ValueError(f"config: {err}") from None


# The config's merge method: the one the tables and figures ask for.
TABLE_METHOD = config_recipe().spec.tag

SIZE_PATTERN = "all|[0-9]+pct|n[0-9]+|pertask[0-9]+"
# One or more <skill>-<size>, "+"-joined: science-all, science-all+safety-all+coding-all.
SKILL_SIZE = f"(?:{'|'.join(SKILLS)})-(?:{SIZE_PATTERN})"
SKILLSET_PATTERN = f"{SKILL_SIZE}(?:\\+{SKILL_SIZE})*"


wildcard_constraints:
    skill="|".join(SKILLS),
    size=SIZE_PATTERN,
    seed="[0-9]+",
    regime="|".join(REGIMES),
    method="|".join(METHOD_TAGS),
    dataset="general|" + "|".join(SKILLS),
    weighting="heuristic|grid",
    skillset=SKILLSET_PATTERN,


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
    """results/logs/<rule>/<parts>.log; seeded jobs pass "seed-{seed}" first: a folder."""
    return f"results/logs/{rule_name}/{_job_name(rule_name, parts)}.log"


def bench_path(rule_name, *parts):
    return f"results/benchmarks/{rule_name}/{_job_name(rule_name, parts)}.tsv"


def _job_name(rule_name, parts):
    if parts and parts[0] == "seed-{seed}":
        return f"seed-{{seed}}/{'-'.join(parts[1:])}"
    return "-".join(parts) or rule_name


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


def seeded(seed, name):
    """A seeded artifact's id under its kind's folder: seed-<N>/<name>."""
    return f"seed-{seed}/{name}"


def task_vector_path(skill, size, seed="{seed}"):
    return f"results/taskvectors/{seeded(seed, f'{skill}-{size}')}.safetensors"


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


# ---- rule inputs and params ----------------------------------------------------------------


def wildcard_seed(wildcards):
    return int(wildcards.seed)


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
    """PTM and RT start from θ_pre, CFT from θ_G; RT and CFT-match also see general data.
    A skillset of several skills trains on the union of their subsets (Table 4's CFT, RT).
    """
    inputs = {"init": THETA_G if wildcards.regime.startswith("cft") else THETA_PRE}
    inputs["data"] = [
        subset_path(skill, size) for skill, size in parse_skillset(wildcards.skillset)
    ]
    if wildcards.regime in ("rt", "cft-match"):
        inputs["general"] = general_subset()
    return inputs


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


def model_seed(wildcards):
    """The seed of evaluation target {model}: seed-<N>/… is seed N, θ_pre and θ_G the base."""
    folder, _, rest = wildcards.model.partition("/")
    return int(folder.removeprefix("seed-")) if rest else config["seed"]


def eval_params(seed):
    """What changes an evaluation: the tasks and generation settings, seed and numerics.
    `seed`: a function of the job's wildcards."""
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
        "seed": seed,
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


# ---- tables and figures --------------------------------------------------------------------
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
