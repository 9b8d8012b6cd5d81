"""The toy world's pretraining corpus (rule world_corpus): plain sentences that state every
ability. Params: `world`, the world keys the corpus depends on (rules/data.smk)."""

from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.world import write_parts

smk = snakemake
log = setup(smk, seed=smk.params.world["seed"])

with Step.from_snakemake(smk, seed=smk.params.world["seed"]) as step:
    rows = write_parts(smk.config["world"], {"corpus": smk.output.artifact})
    log.info("rows: %s", rows)
    step.note(rows=rows)
