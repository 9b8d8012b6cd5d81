"""Datasets: the toy world (embedded scale) or hub datasets (paper scale), then subsets."""

WORLD_FILES = ["corpus", "general", *SKILLS]


if TOY:

    rule world:
        """Generate the toy world: corpus, general mix, skills, eval suites and tokenizer."""
        output:
            **{name: f"results/world/{name}.jsonl" for name in WORLD_FILES},
            **{
                f"{name}_prov": prov(f"results/world/{name}.jsonl")
                for name in WORLD_FILES
            },
            **{f"eval_{s}": f"results/world/eval/{s}.jsonl" for s in SUITES},
            **{f"eval_{s}_prov": prov(f"results/world/eval/{s}.jsonl") for s in SUITES},
            tokenizer=directory("results/world/tokenizer"),
            tokenizer_prov=prov("results/world/tokenizer"),
        log:
            log_path("world"),
        benchmark:
            bench_path("world")
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=scaled("default", "mem_mb"),
            runtime=scaled("default", "runtime"),
        params:
            world=config["world"],
            skills=SKILLS,
        script:
            "../scripts/make_world.py"

else:

    rule fetch_dataset:
        """Download one hub dataset at a pinned revision into chat-format JSONL."""
        input:
            lambda wc: dataset_config(wc.dataset)["data_files"] or [],
        output:
            **artifact("results/sources/{dataset}.jsonl"),
        log:
            log_path("fetch_dataset", "{dataset}"),
        benchmark:
            bench_path("fetch_dataset", "{dataset}")
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=scaled("data", "mem_mb"),
            runtime=scaled("data", "runtime"),
        params:
            spec=lambda wc: dataset_config(wc.dataset),
        script:
            "../scripts/fetch_dataset.py"


rule subset:
    """Draw a seeded subset of a dataset: all, N% (20pct), N examples (n500), N per task."""
    input:
        source=lambda wc: source_path(wc.dataset),
    output:
        **artifact("results/data/{dataset}/{size}.jsonl"),
    log:
        log_path("subset", "{dataset}", "{size}"),
    benchmark:
        bench_path("subset", "{dataset}", "{size}")
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=scaled("default", "mem_mb"),
        runtime=scaled("default", "runtime"),
    params:
        size="{size}",
        seed=lambda wc: dataset_config(wc.dataset)["seed"],
    script:
        "../scripts/subset.py"
