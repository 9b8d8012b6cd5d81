"""Figure 1: every suite's score along the ω grid per skill, the heuristic ω marked; as CSV and
as a plot (mean over seeds, ±1 sd band).

Inputs `evals` (here the ω sweeps and the heuristic merges whose ω is marked) and `models` as
every figure rule's (rules/tables.smk). Params: `skills`, `method` (the sweep's tag).
"""

from mtl.figures import figure1, plot_figure1
from mtl.io import write_csv
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    data = figure1(collect(list(smk.input.evals), list(smk.input.models)),
                   list(smk.params.skills), smk.params.method)
    write_csv(data, smk.output.artifact)
    plot_figure1(data, smk.output.figure)
    log.info("\n%s", data.to_string(index=False))
