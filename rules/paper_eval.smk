"""Paper scale: judge models and benchmark data for evaluation jobs; table 5 beside the paper."""

if not TOY:

    rule fetch_judge:
        """A judge model (classifier or yes/no LM): a hub snapshot at a pinned revision."""
        output:
            **artifact("results/judges/{judge}", folder=True),
        log:
            log_path("fetch_judge", "{judge}"),
        benchmark:
            bench_path("fetch_judge", "{judge}")
        wildcard_constraints:
            judge="[a-z0-9_]+",
        # Downloads run where the network is: on the host that runs Snakemake, never
        # as a cluster job (compute nodes often have no internet).
        localrule: True
        conda:
            "../envs/eval.yaml"
        threads: 1
        resources:
            **family_resources("data"),
        params:
            spec=lambda wc: judge_fetch_spec(wc),
        script:
            "../scripts/fetch_judge.py"

    rule fetch_evaldata:
        """One benchmark's items, in its own schema, from the hub or a pinned URL."""
        output:
            **artifact("results/evaldata/{benchmark}.jsonl"),
        log:
            log_path("fetch_evaldata", "{benchmark}"),
        benchmark:
            bench_path("fetch_evaldata", "{benchmark}")
        wildcard_constraints:
            benchmark="[a-z0-9_]+",
        # Downloads run where the network is: on the host that runs Snakemake, never
        # as a cluster job (compute nodes often have no internet).
        localrule: True
        conda:
            "../envs/eval.yaml"
        threads: 1
        resources:
            **family_resources("data"),
        params:
            spec=lambda wc: benchmark_fetch_spec(wc),
        script:
            "../scripts/fetch_evaldata.py"

    rule table5_vs_paper:
        """Table 5 beside the paper: ours, the paper's published number and the difference."""
        input:
            table5="results/table5.csv",
            reference="results/paper_reference.csv",
        output:
            **artifact("results/table5_vs_paper.csv"),
        log:
            log_path("table5_vs_paper"),
        benchmark:
            bench_path("table5_vs_paper")
        conda:
            "../envs/report.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        script:
            "../scripts/table5_vs_paper.py"
