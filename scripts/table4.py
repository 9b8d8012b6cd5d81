"""Table 4: all skills at once — θ_G, PTM at the heuristic ω, CFT and RT on every skill's
data — as CSV.

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included), and `models`, the trained model folders whose training records give the
steps; both read with mtl.results.collect. Params: `skills`, `method` (the table method's tag).
"""

from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table4, table_cells

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge"]) as step:
    results = collect(evals, list(smk.input.get("models", [])))
    table = table4(results, list(smk.params.skills), method=smk.params.method)
    with atomic_file(smk.output.artifact) as handle:
        table.to_csv(handle, index=False)
    for row, column, files in table_cells(table, evals):
        step.note_cell(row, column, files, config=["evaluation.suites"])
    log.info("\n%s", table.to_string(index=False))
