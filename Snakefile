"""merge-to-learn: parallel-train-then-merge (Morrison et al. 2024) and DARE, data to tables.

snakemake --cores 2 results/table5.csv                 # embedded default (toy world, CPU)
snakemake --cores 2                                    # every table, figure, all_results, claims
snakemake --profile slurm results/table5.csv           # the paper (the profile names paper.yaml)
snakemake --cores 2 --configfile config/standin.yaml -- results/merged/seed-1234/merge-ta-heuristic-science-pertask20+safety-all+coding-all
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


# The HTML report (docs/tables.md, "The HTML report"): this text on its first page, each reported file captioned
# by report/item.rst with its entry's text (mtl.report_items) or by report/<item>.rst
# (rules/common.smk, `reported`).
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/standin.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/merge.smk"
include: "rules/paper_eval.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/outputs.smk"


rule all:
    default_target: True
    input:
        # Every table and figure this config's skills allow, over every seed.
        *[f"results/{name}.csv" for name in REPORTS],
        "results/all_results.csv",
        "results/claims.csv",
        # At paper scale, table 5 beside the paper's published numbers.
        *([] if TOY else ["results/table5_vs_paper.csv"]),
