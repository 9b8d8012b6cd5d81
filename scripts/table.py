"""Table 5: θ_G, each skill at its heuristic ω, every pair and all skills merged, as CSV.

Inputs `evals` and `models` as every table rule's (rules/tables.smk). Params: `skills`,
`method` (the table method's tag).
"""

from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table5, write_table

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)
skills = list(smk.params.skills)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge"]) as step:
    table = table5(collect(evals, list(smk.input.models)), skills, method=smk.params.method)
    write_table(table, smk.output.artifact, step=step, evals=evals)
    # Each ω comes from the merge's recorded point (its summary.json), every seed's.
    for _, row in table.iterrows():
        for skill in skills:
            if row[f"omega_{skill}"] == row[f"omega_{skill}"]:  # not NaN: the skill is merged
                folders = [f for f in evals if f.rstrip("/").endswith("/" + row["source"])]
                step.note_cell(row["model"], f"omega_{skill}",
                               [f"{folder}/summary.json" for folder in folders],
                               config=["merge.method"])
    log.info("\n%s", table.to_string(index=False))
