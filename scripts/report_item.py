"""One table or figure of the report: rules/tables.smk makes one rule per item of
mtl.report_items, named after it, and this program computes the item of its rule: the item's
function over the evaluations, as CSV (a table's cells noted in the provenance record), and its
plot where it has one.

Inputs `evals`, `models` and `dev` (the development-set evaluations; every seed), read with
mtl.results.collect. Params: `suites`, `skills`, `seeds`, `method` (the table method's tag),
and the item's own.
"""

from mtl.provenance import Step
from mtl.report_items import REPORT_ITEMS
from mtl.results import collect
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)
item = REPORT_ITEMS[smk.rule]
evals = list(smk.input.evals)
params = dict(smk.params.items())

with Step.from_snakemake(smk, config_keys=list(item.config_keys)) as step:
    results = collect(evals + list(smk.input.dev), list(smk.input.models))
    data = item.make(results, params)
    item.write(data, smk.output.artifact, step=step, evals=evals, params=params)
    if item.plot:
        item.plot(data, results, params, smk.output.figure)
    log.info("\n%s", data.to_string(index=False))
