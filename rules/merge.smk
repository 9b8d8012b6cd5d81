"""Task vectors τ = θ_D − θ_pre, and merged models written to disk when asked for."""


include: "common/merge.smk"


rule task_vector:
    """τ_D = θ_D − θ_pre (θ_D of one seed), streamed tensor by tensor into one file."""
    input:
        theta_pre=THETA_PRE,
        theta_d=model_dir("seed-{seed}/ptm-{skill}-{size}"),
    output:
        **artifact(task_vector_path("{skill}", "{size}")),
    log:
        log_path("task_vector", "seed-{seed}", "{skill}", "{size}"),
    benchmark:
        bench_path("task_vector", "seed-{seed}", "{skill}", "{size}")
    conda:
        "../envs/merge.yaml"
    threads: 1
    resources:
        **family_resources("merge"),
    params:
        resize_vocab=config_recipe().resize_vocab,
    script:
        "../scripts/task_vector.py"


rule merge_model:
    """A merged model kept on disk at the heuristic ω (evaluation merges in memory; ask for
    this to keep one). Any method of the engine's registry, by its tag."""
    input:
        unpack(merge_inputs),
    output:
        **artifact(
            "results/merged/seed-{seed}/merge-{method}-{weighting}-{skillset}",
            folder=True,
        ),
    log:
        log_path("merge_model", "seed-{seed}", "{method}", "{weighting}", "{skillset}"),
    benchmark:
        bench_path(
            "merge_model", "seed-{seed}", "{method}", "{weighting}", "{skillset}"
        )
    wildcard_constraints:
        weighting="heuristic",
    conda:
        "../envs/merge.yaml"
    threads: 1
    resources:
        **family_resources("merge"),
    params:
        **omega_param(),
        # Vectorized kernels fuse ω·τ + θ into one rounding: the numerics change the bytes.
        recipe=merge_params,
        numerics=NUMERICS,
    script:
        "../scripts/merge.py"
