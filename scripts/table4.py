"""Table 4: all skills at once — θ_G, PTM at the heuristic ω, CFT and RT on every skill's
data — as CSV.

Inputs `evals` and `models` as every table rule's (rules/tables.smk). Params: `skills`,
`method` (the table method's tag).
"""

from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table4, write_table

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge"]) as step:
    table = table4(collect(evals, list(smk.input.models)), list(smk.params.skills),
                   method=smk.params.method)
    write_table(table, smk.output.artifact, step=step, evals=evals)
    log.info("\n%s", table.to_string(index=False))
