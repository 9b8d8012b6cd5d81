"""Figure 5: General vs. exaggerated refusals (ExRef) of every model trained on safety data
(CFT, RT, CFT-match, PTM; alone and with the other skills); as CSV and as a plot.

Inputs `evals` and `models` as every figure rule's (rules/tables.smk). Params: `method` (the
PTM merge's tag).
"""

from mtl.figures import figure5, plot_figure5
from mtl.io import write_csv
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    data = figure5(collect(list(smk.input.evals), list(smk.input.models)),
                   smk.params.method)
    write_csv(data, smk.output.artifact)
    plot_figure5(data, smk.output.figure)
    log.info("\n%s", data.to_string(index=False))
