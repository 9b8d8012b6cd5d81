"""Write one of the paper's tables as CSV, from the evaluation folders only."""

from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.tables import table5

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk) as step:
    frame = table5(smk.input.baseline, list(smk.input.merges), smk.params.suites,
                   smk.params.skills)
    with atomic_file(smk.output.artifact) as handle:
        frame.to_csv(handle, index=False)
    log.info("\n%s", frame.to_string(index=False))
