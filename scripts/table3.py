"""Table 3: per skill, CFT vs. RT vs. PTM against θ_G, with each procedure's training steps;
as CSV and as a plot of General vs. skill score.

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included), and `models`, the trained model folders whose training records give the
steps; both read with mtl.results.collect. Params: `skills`, `method` (the table method's tag).
"""

from mtl.figures import figure1, plot_table3
from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table3, table_cells

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)
skills = list(smk.params.skills)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge", "training"]) as step:
    results = collect(evals, list(smk.input.get("models", [])))
    table = table3(results, skills, method=smk.params.method)
    with atomic_file(smk.output.artifact) as handle:
        table.to_csv(handle, index=False)
    with atomic_file(smk.output.figure, "wb") as handle:
        plot_table3(table, figure1(results, skills, smk.params.method), handle)
    for row, column, files in table_cells(table, evals, ("skill", "procedure")):
        step.note_cell(row, column, files, config=["evaluation.suites"])
    log.info("\n%s", table.to_string(index=False))
