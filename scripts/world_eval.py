"""The toy world's evaluation suites (rule world_eval): outputs `eval_<suite>`, each with its
record `eval_<suite>_prov`. Params: `world`, the world keys the suites depend on."""

from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.world import write_parts

smk = snakemake
log = setup(smk, seed=smk.params.world["seed"])

with Step.from_snakemake(smk, seed=smk.params.world["seed"]) as step:
    suites = {name: path for name, path in smk.output.items() if not name.endswith("_prov")}
    rows = write_parts(smk.config["world"], suites)
    log.info("rows: %s", rows)
    step.note(rows=rows)
