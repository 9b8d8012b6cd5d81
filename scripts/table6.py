"""Table 6: the merge of every skill at the heuristic ω by task arithmetic, TIES, DARE and
DARE-TIES (density: merge.density), beside θ_G, as CSV.

Inputs `evals` and `models` as every table rule's (rules/tables.smk). Params: `skills`,
`methods` (merge tags, in order), `density`.
"""

from mtl.provenance import Step
from mtl.results import collect
from mtl.stepkit import setup
from mtl.tables import table6, write_table

smk = snakemake
log = setup(smk)
evals = list(smk.input.evals)

with Step.from_snakemake(smk, config_keys=["seeds", "evaluation", "merge"]) as step:
    table = table6(collect(evals, list(smk.input.models)), list(smk.params.skills),
                   methods=list(smk.params.methods), density=smk.params.get("density"))
    write_table(table, smk.output.artifact, step=step, evals=evals)
    log.info("\n%s", table.to_string(index=False))
