"""results/all_results.csv: every evaluation the tables and figures read, every seed, one row
per model or merge point, seed, suite and metric (mtl.results)."""

from mtl.io import write_csv
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk) as step:
    frame = collect(list(smk.input.evals), list(smk.input.models))
    write_csv(frame, smk.output.artifact)
    log.info("%d rows from %d evaluations", len(frame), len(smk.input.evals))
    step.note(rows=len(frame))
