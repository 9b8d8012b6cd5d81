"""Figure 4: General vs. exaggerated refusals (ExRef) along the safety ω grid, one curve per
merge method; as CSV and as a plot.

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included), and `models`; both read with mtl.results.collect. Params: `methods` (the
merge tags, in the figure's order).
"""

from mtl.figures import figure4, plot_figure4
from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    data = figure4(collect(list(smk.input.evals), list(smk.input.get("models", []))),
                   list(smk.params.methods))
    with atomic_file(smk.output.artifact) as handle:
        data.to_csv(handle, index=False)
    with atomic_file(smk.output.figure, "wb") as handle:
        plot_figure4(data, handle)
    log.info("\n%s", data.to_string(index=False))
