"""Table 6: the merge of every skill at the heuristic ω by task arithmetic, TIES, DARE and
DARE-TIES (density: merge.density), beside θ_G, as CSV.

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included), and `models`, the trained model folders whose training records give the
steps; both read with mtl.results.collect. Params: `skills`, `methods` (merge tags, in order).
"""

from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table6, table_cells

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge"]) as step:
    table = table6(collect(evals, list(smk.input.get("models", []))), list(smk.params.skills),
                   methods=list(smk.params.methods), density=smk.params.get("density"))
    with atomic_file(smk.output.artifact) as handle:
        table.to_csv(handle, index=False)
    for row, column, files in table_cells(table, evals):
        step.note_cell(row, column, files, config=["evaluation.suites"])
    log.info("\n%s", table.to_string(index=False))
