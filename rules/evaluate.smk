"""Evaluation through lm-eval: trained models, and merges evaluated in memory."""


include: "common/evaluate.smk"


rule evaluate_model:
    """Every suite on one trained model folder: one lm-eval JSON per suite."""
    input:
        **paper_eval_inputs(),
        model=lambda wc: model_dir(wc.model),
        suites=suite_data(),
    output:
        **artifact(eval_dir("{model}"), folder=True),
    log:
        log_path("evaluate_model", "{model}"),
    benchmark:
        bench_path("evaluate_model", "{model}")
    wildcard_constraints:
        # θ_pre and θ_G (shared), or a seed's trained model: seed-<N>/<regime>-<skillset>.
        model="pretrained|general|seed-[0-9]+/(?:"
        + "|".join(REGIMES)
        + ")-"
        + SKILLSET_PATTERN,
    conda:
        "../envs/eval.yaml"
    threads: res("evaluate", "threads")
    resources:
        **family_resources("evaluate"),
    params:
        **eval_params(seed=model_seed),
        recipe=None,
    script:
        "../scripts/evaluate.py"


rule evaluate_merge:
    """θ_G merged in place with the skills by any method of the engine's registry, at the
    heuristic ω or over the ω grid, and evaluated (the recipe says which points)."""
    input:
        unpack(merge_eval_inputs),
        **paper_eval_inputs(),
        suites=suite_data(),
    output:
        **artifact(
            eval_dir("seed-{seed}/merge-{method}-{weighting}-{skillset}"), folder=True
        ),
    log:
        log_path(
            "evaluate_merge", "seed-{seed}", "{method}", "{weighting}", "{skillset}"
        ),
    benchmark:
        bench_path(
            "evaluate_merge", "seed-{seed}", "{method}", "{weighting}", "{skillset}"
        )
    conda:
        "../envs/eval.yaml"
    threads: res("evaluate", "threads")
    resources:
        **family_resources("evaluate"),
    params:
        **eval_params(seed=wildcard_seed),
        **omega_param(),
        recipe=merge_params,
    script:
        "../scripts/evaluate.py"


rule evaluate_dev:
    """A merge's ω grid on the development sets of its skills: ω is chosen there, and the
    tables report that point's test scores (Table 3's held-out ω)."""
    input:
        unpack(merge_eval_inputs),
        suites=dev_suite_data,
    output:
        **artifact(
            dev_dir("seed-{seed}/merge-{method}-{weighting}-{skillset}"), folder=True
        ),
    log:
        log_path("evaluate_dev", "seed-{seed}", "{method}", "{weighting}", "{skillset}"),
    benchmark:
        bench_path(
            "evaluate_dev", "seed-{seed}", "{method}", "{weighting}", "{skillset}"
        )
    wildcard_constraints:
        weighting="grid",
    conda:
        "../envs/eval.yaml"
    threads: res("evaluate", "threads")
    resources:
        **family_resources("evaluate"),
    params:
        **dev_eval_params(),
        **omega_param(),
        recipe=merge_params,
    script:
        "../scripts/evaluate.py"
