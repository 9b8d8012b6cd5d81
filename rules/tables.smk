"""The paper's tables and figures, computed from the evaluation JSONs only.

Every rule reads `evals` and `models` (every seed; rules/common/tables.smk) with
mtl.results.collect.
"""


include: "common/tables.smk"


rule table2:
    """Table 2: science across data sizes: θ_G and the best CFT, RT and PTM (over sizes, and ω
    for PTM), each with its size, ω and training steps."""
    input:
        unpack(table2_inputs),
    output:
        **artifact("results/table2.csv", report_as="table2"),
        figure=reported("results/figures/table2.png", "table2"),
        figure_prov=prov("results/figures/table2.png"),
    log:
        log_path("table2"),
    benchmark:
        bench_path("table2")
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
        sizes=config["data"]["skills"].get("science", {}).get("sizes", []),
    script:
        "../scripts/table2.py"


rule table3:
    """Table 3: per skill, CFT, RT and PTM (heuristic and best grid ω) against θ_G."""
    input:
        unpack(table3_inputs),
    output:
        **artifact("results/table3.csv", report_as="table3"),
        figure=reported("results/figures/table3.png", "table3"),
        figure_prov=prov("results/figures/table3.png"),
    log:
        log_path("table3"),
    benchmark:
        bench_path("table3")
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
        "../scripts/table3.py"


rule table4:
    """Table 4: all skills at once: θ_G, PTM at the heuristic ω, CFT and RT on every skill."""
    input:
        unpack(table4_inputs),
    output:
        **artifact("results/table4.csv", report_as="table4"),
    log:
        log_path("table4"),
    benchmark:
        bench_path("table4")
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
        "../scripts/table4.py"


rule table5:
    """Table 5: θ_G, each skill at its heuristic ω, every pair, and all skills merged."""
    input:
        unpack(table5_inputs),
    output:
        **artifact("results/table5.csv", report_as="table5"),
    log:
        log_path("table5"),
    benchmark:
        bench_path("table5")
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
        "../scripts/table.py"


rule table6:
    """Table 6: the all-skill merge at the heuristic ω by TA, TIES, DARE and DARE-TIES."""
    input:
        unpack(table6_inputs),
    output:
        **artifact("results/table6.csv", report_as="table6"),
    log:
        log_path("table6"),
    benchmark:
        bench_path("table6")
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
        methods=[tag(name) for name in TABLE6_METHODS],
        density=config["merge"]["density"],
    script:
        "../scripts/table6.py"


rule figure1:
    """Figure 1: general and skill scores along the ω grid, the heuristic ω marked."""
    input:
        unpack(figure1_inputs),
    output:
        **artifact("results/figure1.csv", report_as="figure1"),
        figure=reported("results/figures/figure1.png", "figure1"),
        figure_prov=prov("results/figures/figure1.png"),
    log:
        log_path("figure1"),
    benchmark:
        bench_path("figure1")
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
        "../scripts/figure.py"


rule figure2:
    """Figure 2: WiSE-FT along ω from θ_CFT trained on D, and on D plus as much G."""
    input:
        unpack(figure2_inputs),
    output:
        **artifact("results/figure2.csv", report_as="figure2"),
        figure=reported("results/figures/figure2.png", "figure2"),
        figure_prov=prov("results/figures/figure2.png"),
    log:
        log_path("figure2"),
    benchmark:
        bench_path("figure2")
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
        methods=[tag(name) for name in FIGURE2_METHODS],
    script:
        "../scripts/figure2.py"


rule figure3:
    """Figure 3: per skill, task arithmetic, linear and WiSE-FT along ω (General vs. skill)."""
    input:
        unpack(figure3_inputs),
    output:
        **artifact("results/figure3.csv", report_as="figure3"),
        figure=reported("results/figures/figure3.png", "figure3"),
        figure_prov=prov("results/figures/figure3.png"),
    log:
        log_path("figure3"),
    benchmark:
        bench_path("figure3")
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
        methods=[tag(name) for name in SWEEP_METHODS],
    script:
        "../scripts/figure3.py"


rule figure4:
    """Figure 4: General vs. exaggerated refusals along the safety ω grid, per method."""
    input:
        unpack(figure4_inputs),
    output:
        **artifact("results/figure4.csv", report_as="figure4"),
        figure=reported("results/figures/figure4.png", "figure4"),
        figure_prov=prov("results/figures/figure4.png"),
    log:
        log_path("figure4"),
    benchmark:
        bench_path("figure4")
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
        methods=[tag(name) for name in SWEEP_METHODS],
    script:
        "../scripts/figure4.py"


rule figure5:
    """Figure 5: General vs. exaggerated refusals of every model trained on safety data."""
    input:
        unpack(figure5_inputs),
    output:
        **artifact("results/figure5.csv", report_as="figure5"),
        figure=reported("results/figures/figure5.png", "figure5"),
        figure_prov=prov("results/figures/figure5.png"),
    log:
        log_path("figure5"),
    benchmark:
        bench_path("figure5")
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
        "../scripts/figure5.py"


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
