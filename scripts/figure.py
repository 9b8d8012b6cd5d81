"""Figure 1: every suite's score along the ω grid per skill, the heuristic ω marked; as CSV and
as a plot (mean over seeds, ±1 sd band).

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included; here the ω sweeps and the heuristic merges whose ω is marked), and
`models`; both read with mtl.results.collect. Params: `skills`, `method` (the sweep's tag).
"""

from mtl.figures import figure1, plot_figure1
from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    data = figure1(collect(list(smk.input.evals), list(smk.input.get("models", []))),
                   list(smk.params.skills), smk.params.method)
    with atomic_file(smk.output.artifact) as handle:
        data.to_csv(handle, index=False)
    with atomic_file(smk.output.figure, "wb") as handle:
        plot_figure1(data, handle)
    log.info("\n%s", data.to_string(index=False))
