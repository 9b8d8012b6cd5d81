"""Table 5 beside the paper's published numbers: ours, the paper's and the difference."""

import pandas as pd

from mtl.io import write_csv
from mtl.paper_compare import compare, read_reference
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk) as step:
    frame = compare(pd.read_csv(smk.input.table5), read_reference(smk.input.reference))
    write_csv(frame, smk.output.artifact)
    log.info("\n%s", frame.to_string(index=False))
