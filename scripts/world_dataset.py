"""One chat dataset of the toy world (rule world_dataset): the general mix or one skill.
Params: `world`, the world keys the dataset depends on (rules/data.smk)."""

from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.world import write_parts

smk = snakemake
log = setup(smk, seed=smk.params.world["seed"])

with Step.from_snakemake(smk, seed=smk.params.world["seed"]) as step:
    rows = write_parts(smk.config["world"], {smk.wildcards.dataset: smk.output.artifact})
    log.info("rows: %s", rows)
    step.note(rows=rows)
