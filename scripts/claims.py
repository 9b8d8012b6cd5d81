"""results/claims.csv: each claim of the paper the tables support (docs/tables.md), its deciding
numbers (mean ± spread over seeds), the rule and holds | fails (mtl.claims).

Inputs: `results`, results/all_results.csv (mtl.results' schema). Params: `skills`, `method`
(the PTM merge's tag).
"""

from mtl.claims import claims
from mtl.io import write_csv
from mtl.provenance import Step
from mtl.results import read
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["seeds"]) as step:
    table = claims(read(smk.input.results), list(smk.params.skills),
                   smk.params.method)
    write_csv(table, smk.output.artifact)
    held = {claim: (part["verdict"] == "holds").all() for claim, part in table.groupby("claim")}
    step.note(claims_held=int(sum(held.values())), claims=len(held))
    log.info("\n%s\n%d of %d claims hold (every part)", table.to_string(index=False),
             sum(held.values()), len(held))
