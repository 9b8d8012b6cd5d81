"""Table 3: per skill, CFT vs. RT vs. PTM against θ_G, with each procedure's training steps;
as CSV and as a plot of General vs. skill score.

Inputs `evals` and `models` as every table rule's (rules/tables.smk). Params: `skills`,
`method` (the table method's tag).
"""

from mtl.figures import figure1, plot_table3
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table3, write_table

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)
skills = list(smk.params.skills)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge", "training"]) as step:
    results = collect(evals, list(smk.input.models))
    table = table3(results, skills, method=smk.params.method)
    write_table(table, smk.output.artifact, step=step, evals=evals,
                label_columns=("skill", "procedure"))
    plot_table3(table, figure1(results, skills, smk.params.method), smk.output.figure)
    log.info("\n%s", table.to_string(index=False))
