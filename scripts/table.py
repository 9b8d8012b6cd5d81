"""Table 5: θ_G, each skill at its heuristic ω, every pair and all skills merged, as CSV.

Inputs (every table and figure rule): `evals`, the evaluation folders of every seed (θ_G's
shared one included), and `models`, the trained model folders whose training records give the
steps; both read with mtl.results.collect. Params: `skills`, `method` (the table method's tag).
"""

from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table5, table_cells

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)
skills = list(smk.params.skills)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge"]) as step:
    table = table5(collect(evals, list(smk.input.get("models", []))), skills,
                   method=smk.params.method)
    with atomic_file(smk.output.artifact) as handle:
        table.to_csv(handle, index=False)
    # Which evaluation files each score comes from, every seed's (`mtl-audit --cells`).
    for row, column, files in table_cells(table, evals):
        step.note_cell(row, column, files, config=["evaluation.suites"])
    # Each ω comes from the merge's recorded point (its summary.json), every seed's.
    for _, row in table.iterrows():
        for skill in skills:
            if row[f"omega_{skill}"] == row[f"omega_{skill}"]:  # not NaN: the skill is merged
                folders = [f for f in evals if f.rstrip("/").endswith("/" + row["source"])]
                step.note_cell(row["model"], f"omega_{skill}",
                               [f"{folder}/summary.json" for folder in folders],
                               config=["merge.method"])
    log.info("\n%s", table.to_string(index=False))
