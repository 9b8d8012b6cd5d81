"""Table 2: one skill (science) across data sizes — θ_G and the best CFT, RT and PTM with their
size, ω and steps — as CSV and as a plot.

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included), and `models`, the trained model folders whose training records give the
steps; both read with mtl.results.collect. Params: `method`, the table method's tag.
"""

from mtl.figures import plot_table2, table2_points
from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table2, table_cells

SKILL = "science"  # the paper's Table 2 is science's

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge", "data"]) as step:
    results = collect(evals, list(smk.input.get("models", [])))
    table = table2(results, SKILL, method=smk.params.method)
    with atomic_file(smk.output.artifact) as handle:
        table.to_csv(handle, index=False)
    with atomic_file(smk.output.figure, "wb") as handle:
        plot_table2(table, table2_points(results, SKILL, smk.params.method), SKILL, handle)
    # Which evaluation files each score comes from, every seed's (`mtl-audit --cells`).
    for row, column, files in table_cells(table, evals):
        step.note_cell(row, column, files, config=["evaluation.suites"])
    log.info("\n%s", table.to_string(index=False))
