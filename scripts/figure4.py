"""Figure 4: General vs. exaggerated refusals (ExRef) along the safety ω grid, one curve per
merge method; as CSV and as a plot.

Inputs `evals` and `models` as every figure rule's (rules/tables.smk). Params: `methods` (the
merge tags, in the figure's order).
"""

from mtl.figures import figure4, plot_figure4
from mtl.io import write_csv
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    data = figure4(collect(list(smk.input.evals), list(smk.input.models)),
                   list(smk.params.methods))
    write_csv(data, smk.output.artifact)
    plot_figure4(data, smk.output.figure)
    log.info("\n%s", data.to_string(index=False))
