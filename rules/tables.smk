"""The paper's tables, computed from the evaluation JSONs only."""


rule table5:
    """Table 5: θ_G, each skill at its heuristic ω, every pair, and all skills merged."""
    input:
        baseline=eval_dir("general"),
        merges=[eval_dir(m) for m in table5_merges()],
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
        mem_mb=scaled("default", "mem_mb"),
        runtime=scaled("default", "runtime"),
    params:
        suites=SUITES,
        skills=SKILLS,
    script:
        "../scripts/table.py"


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
        mem_mb=scaled("default", "mem_mb"),
        runtime=scaled("default", "runtime"),
    params:
        suites=SUITES,
        skills=SKILLS,
    script:
        "../scripts/table3.py"


rule figure1:
    """Figure 1: general and skill scores along the ω grid, the heuristic ω marked."""
    input:
        baseline=eval_dir("general"),
        sweeps=[
            eval_dir(merge_id(TABLE_METHOD, "grid", [(skill, first_size(skill))]))
            for skill in SKILLS
        ],
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
        mem_mb=scaled("default", "mem_mb"),
        runtime=scaled("default", "runtime"),
    script:
        "../scripts/figure.py"
