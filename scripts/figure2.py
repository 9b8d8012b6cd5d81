"""Figure 2: WiSE-FT along ω from θ_CFT trained on D and from θ_CFT trained on D plus as much
general data, per skill (the paper's: science); as CSV and as a plot.

Inputs `evals` and `models` as every figure rule's (rules/tables.smk). Params: `methods`, the
two WiSE-FT tags (on D, on D + matching G), `skills` (those of the paper's figure that the
config has: science).
"""

from mtl.figures import WISEFT_VARIANTS, figure2, plot_figure2
from mtl.io import write_csv
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup

FIGURE_SKILLS = ["science"]  # the paper's Figure 2

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds", "merge"]) as step:
    skills = [s for s in FIGURE_SKILLS if s in smk.params.skills]
    variants = {tag: WISEFT_VARIANTS.get(tag, tag) for tag in smk.params.methods}
    data = figure2(collect(list(smk.input.evals), list(smk.input.models)), skills,
                   variants)
    write_csv(data, smk.output.artifact)
    plot_figure2(data, smk.output.figure)
    log.info("\n%s", data.to_string(index=False))
