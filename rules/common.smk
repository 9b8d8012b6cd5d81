"""Shared by the whole workflow: the environment and numerics, the config's skills, suites and
seeds, wildcards, paths, resources and logs. Each stage's own input and params helpers are in
rules/common/<stage>.smk, which its rules file includes."""

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

from mtl.cluster import GROWING, merged_resources, on_retry, slurm_resources
from mtl.merge import METHODS, MergeError, Recipe
from mtl.merge.config import merge_config
from mtl.omega import omega_params, plan
from mtl.regimes import REGIMES as REGIME_REGISTRY
from mtl.subsets import SIZE_PATTERN, parse_size
from mtl.suites import skill_rank
from mtl.targets import parse_skillset
from mtl.stepkit import numerics_settings, pin_environment
from mtl.world import SKILLS as WORLD_SKILLS

# Every job inherits this process's environment, and torch, MKL and oneDNN read their kernel
# choices from it when they load, before a step program runs: so the numerics are pinned here,
# once per parse (SLURM jobs parse this file again, and pin again). An outside value is
# overridden on purpose (mtl.stepkit says why) and named, so the override is never silent.
NUMERICS = numerics_settings(config.get("numerics"))
for replaced in pin_environment(os.environ, NUMERICS):
    print(f"numerics: replaced the outside {replaced}", file=sys.stderr)

# The `merge` section's keys are the method registry's (config/schema.yaml leaves it open).
try:
    config["merge"] = merge_config(config["merge"])
except MergeError as err:
    raise ValueError(f"config: {err}") from None

TOY = config["scale"] == "toy"
# The paper's order, then any others by name: merging config files may reorder the mapping,
# and skill order names merges and ω columns, so it must not follow the YAML.
SKILLS = sorted(config["data"]["skills"], key=skill_rank)
SUITES = list(config["evaluation"]["suites"])


def check_sizes():
    """Every subset size the config names, in mtl.subsets' grammar (the schema checks only that
    each is a string), so a bad one is named before any job is planned."""
    named = {"data.general.size": [config["data"]["general"]["size"]]}
    for skill, spec in config["data"]["skills"].items():
        named[f"data.skills.{skill}.sizes"] = spec["sizes"]
    for key, sizes in named.items():
        for size in sizes:
            try:
                parse_size(size)
            except ValueError as err:
                raise ValueError(f"config {key}: {err}") from None


check_sizes()
REGIMES = list(REGIME_REGISTRY)
# Each seed trains its own skill models, task vectors and merges (results/*/seed-<N>/);
# θ_pre and θ_G are trained once, by the base `seed`, and shared (as the paper's are).
SEEDS = list(config["seeds"])
# Merge methods by their short name in targets (merge-<tag>-…), from the engine's registry.
METHOD_TAGS = {method.tag: name for name, method in METHODS.items()}
# merge.omega_sizes: paper without the paper's sizes is named here, before any job is planned.
omega_params(config["merge"], config["data"], SKILLS)
# The heuristic ω of each skill beside the paper's, once per run (jobs parse this file again).
if not TOY and workflow.is_main_process:
    for line in plan(config["data"], SKILLS, config["merge"]):
        print(line, file=sys.stderr)


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


def reported(path, item, caption=None):
    """`path` flagged for the HTML report (`snakemake --report`), captioned by `caption` (by
    default report/<item>.rst) and filed by paper item: table<N> under Tables, figure<N> under
    Figures, anything else under Summary; so a table's CSV sits beside its plot, a figure's plot
    beside its data."""
    caption = caption or Path(workflow.basedir) / "report" / f"{item}.rst"
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


def artifact(path, folder=False, report_as=None, caption=None):
    """A declared output and its provenance record, as named outputs; with `report_as` (a
    report item, see `reported`, and its `caption`), the output is in the HTML report, its
    record is not.
    """
    declared = directory(path) if folder else path
    if report_as:
        declared = reported(declared, report_as, caption)
    return {"artifact": declared, "prov": prov(path)}


def resources_for(family):
    """Resources of a rule family from the config, falling back to `default`.

    When `numerics.threads` pins the intra-op thread count, no job uses more threads than that,
    so that is what each job reserves (more would idle cores that other jobs could use).
    """
    merged = merged_resources(config["resources"], family)
    if NUMERICS["threads"] is not None:
        merged["threads"] = NUMERICS["threads"]
    return merged


def res(family, key):
    return resources_for(family)[key]


def family_resources(family):
    """The resources of a family of rules: memory and time that grow with each retry, so a job
    killed for either comes back bigger, up to the caps of the family's partition
    (mtl.cluster.on_retry); for a GPU family its GPUs, all on one node, of the configured kind,
    and the warning signal before the time limit (mtl.cluster.slurm_resources)."""
    spec = resources_for(family)
    grown = {}
    for key in GROWING:
        # A base above its cap fails here, before any job runs.
        on_retry(spec, key, 1, family)
        grown[key] = lambda wildcards, attempt, key=key: on_retry(
            spec, key, attempt, family
        )
    return {**slurm_resources(spec), **grown}


def log_path(rule_name, *parts):
    """results/logs/<rule>/<parts>.log; seeded jobs pass "seed-{seed}" first: a folder."""
    return f"results/logs/{rule_name}/{_job_name(rule_name, parts)}.log"


def bench_path(rule_name, *parts):
    return f"results/benchmarks/{rule_name}/{_job_name(rule_name, parts)}.tsv"


def _job_name(rule_name, parts):
    if parts and parts[0] == "seed-{seed}":
        return f"seed-{{seed}}/{'-'.join(parts[1:])}"
    return "-".join(parts) or rule_name


# ---- paths ---------------------------------------------------------------------------------


def subset_path(dataset, size):
    return f"results/data/{dataset}/{size}.jsonl"


def general_subset():
    return subset_path("general", config["data"]["general"]["size"])


def model_dir(model_id):
    return f"results/models/{model_id}"


THETA_PRE = model_dir("pretrained")
THETA_G = model_dir("general")


def seeded(seed, name):
    """A seeded artifact's id under its kind's folder: seed-<N>/<name>."""
    return f"seed-{seed}/{name}"


def task_vector_path(skill, size, seed="{seed}"):
    return f"results/taskvectors/{seeded(seed, f'{skill}-{size}')}.safetensors"


def eval_dir(model_id):
    return f"results/evals/{model_id}"


def wildcard_seed(wildcards):
    return int(wildcards.seed)
