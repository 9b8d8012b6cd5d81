"""Table 2: one skill (science) across data sizes — θ_G and the best CFT, RT and PTM with their
size, ω and steps — as CSV and as a plot.

Inputs `evals` and `models` as every table rule's (rules/tables.smk). Params: `method`, the
table method's tag.
"""

from mtl.figures import plot_table2, table2_points
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table2, write_table

SKILL = "science"  # the paper's Table 2 is science's

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge", "data"]) as step:
    results = collect(evals, list(smk.input.models))
    table = table2(results, SKILL, method=smk.params.method)
    write_table(table, smk.output.artifact, step=step, evals=evals)
    plot_table2(table, table2_points(results, SKILL, smk.params.method), SKILL,
                smk.output.figure)
    log.info("\n%s", table.to_string(index=False))
