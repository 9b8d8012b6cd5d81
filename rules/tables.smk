"""The paper's tables and figures, computed from the evaluation JSONs only: one rule per report
item (mtl.report_items, named after it), then every result in one CSV and the paper's claims.

Every rule reads `evals` and `models` (every seed; rules/common/tables.smk) with
mtl.results.collect.
"""


include: "common/tables.smk"


for item in REPORTS:

    rule:
        """One table or figure of the paper (mtl.report_items): its item's function over the
        evaluation JSONs it reads, as CSV, and its plot where it has one."""
        name:
            item
        input:
            **report_inputs(item),
        output:
            **report_outputs(item),
        log:
            log_path(item),
        benchmark:
            bench_path(item)
        conda:
            "../envs/report.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        params:
            **report_params(item),
        script:
            "../scripts/report_item.py"


rule all_results:
    """results/all_results.csv: one row per evaluated model or merge point, seed, suite and
    metric, for every evaluation a table or figure reads (mtl.results.COLUMNS)."""
    input:
        unpack(all_results_inputs),
    output:
        **artifact("results/all_results.csv", report_as="all_results"),
    log:
        log_path("all_results"),
    benchmark:
        bench_path("all_results")
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("default"),
    script:
        "../scripts/all_results.py"


rule claims:
    """results/claims.csv: each claim of the paper the tables support, decided on the mean
    and spread over the seeds."""
    input:
        results="results/all_results.csv",
    output:
        **artifact("results/claims.csv", report_as="claims"),
    log:
        log_path("claims"),
    benchmark:
        bench_path("claims")
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        **family_resources("default"),
    params:
        suites=SUITES,
        skills=SKILLS,
        seeds=SEEDS,
        method=TABLE_METHOD,
    script:
        "../scripts/claims.py"
