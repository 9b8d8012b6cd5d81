"""Figure 3: per skill, task arithmetic, linear interpolation and WiSE-FT along ω (General vs.
the skill's score); as CSV and as a plot.

Inputs `evals` and `models` as every figure rule's (rules/tables.smk). Params: `skills`,
`methods` (the merge tags, in the figure's order).
"""

from mtl.figures import figure3, plot_figure3
from mtl.io import write_csv
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    data = figure3(collect(list(smk.input.evals), list(smk.input.models)),
                   list(smk.params.skills), list(smk.params.methods))
    write_csv(data, smk.output.artifact)
    plot_figure3(data, smk.output.figure)
    log.info("\n%s", data.to_string(index=False))
