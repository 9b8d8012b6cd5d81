"""Input and params helpers of rules/tables.smk: the report items (mtl.report_items) under this
config."""

from mtl.io import atomic_file
from mtl.merge.recipe import compared_methods
from mtl.report_items import REPORT_ITEMS, available
from mtl.report_types import Plan

# What every item's inputs and params derive from.
PLAN = Plan(
    sizes={skill: config["data"]["skills"][skill]["sizes"] for skill in SKILLS},
    method=TABLE_METHOD,
    density=config["merge"]["density"],
    compared=compared_methods(config["merge"]),
)
# The tables and figures this config can make: Table 2 and Figure 2 need science, Figures 4
# and 5 safety (the paper's skills); the rest any skills.
REPORTS = [item.name for item in available(SKILLS)]


def report_inputs(name):
    """θ_G's evaluation and model (shared by the seeds), and the item's evaluations, trained
    models and development-set evaluations under every seed."""
    reads = REPORT_ITEMS[name].reads(PLAN)
    return {
        "evals": [eval_dir("general")]
        + [eval_dir(seeded(seed, i)) for seed in SEEDS for i in reads.evals],
        "models": [THETA_G]
        + [model_dir(seeded(seed, i)) for seed in SEEDS for i in reads.models],
        "dev": (
            [dev_dir(seeded(seed, i)) for seed in SEEDS for i in reads.dev]
            if DEV_SPLIT
            else []
        ),
    }


def item_caption(name):
    """The item's caption file for the HTML report: report/item.rst after the item's own text
    (mtl.report_items), written under .snakemake/captions/ (Snakemake reads a caption from a
    file), rewritten only when it changed."""
    template = (Path(workflow.basedir) / "report" / "item.rst").read_text(
        encoding="utf-8"
    )
    text = REPORT_ITEMS[name].caption_template(template).encode()
    path = Path(".snakemake", "captions", f"{name}.rst").resolve()
    if not path.is_file() or path.read_bytes() != text:
        with atomic_file(path, "wb") as handle:
            handle.write(text)
    return path


def report_outputs(name):
    """results/<item>.csv and, for an item with a plot, results/figures/<item>.png; each with its
    provenance record and captioned in the HTML report by `item_caption`."""
    caption = item_caption(name)
    outputs = artifact(f"results/{name}.csv", report_as=name, caption=caption)
    if REPORT_ITEMS[name].plot:
        figure = f"results/figures/{name}.png"
        outputs.update(figure=reported(figure, name, caption), figure_prov=prov(figure))
    return outputs


def report_params(name):
    """The params every item shares, then the item's own."""
    shared = {
        "suites": SUITES,
        "skills": SKILLS,
        "seeds": SEEDS,
        "method": TABLE_METHOD,
    }
    return {**shared, **REPORT_ITEMS[name].params(PLAN)}


def all_results_inputs(wildcards):
    """Every evaluation (and trained model) that a table or figure of this config reads."""
    evals, models = {}, {}
    for name in REPORTS:
        inputs = report_inputs(name)
        evals.update(dict.fromkeys(inputs["evals"] + inputs["dev"]))
        models.update(dict.fromkeys(inputs["models"]))
    return {"evals": list(evals), "models": list(models)}
