"""Figure 5: General vs. exaggerated refusals (ExRef) of every model trained on safety data
(CFT, RT, CFT-match, PTM; alone and with the other skills); as CSV and as a plot.

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included), and `models`; both read with mtl.results.collect. Params: `method` (the
PTM merge's tag).
"""

from mtl.figures import figure5, plot_figure5
from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    data = figure5(collect(list(smk.input.evals), list(smk.input.get("models", []))),
                   smk.params.method)
    with atomic_file(smk.output.artifact) as handle:
        data.to_csv(handle, index=False)
    with atomic_file(smk.output.figure, "wb") as handle:
        plot_figure5(data, handle)
    log.info("\n%s", data.to_string(index=False))
