"""Datasets: the toy world (embedded scale) or hub datasets (paper scale), then subsets."""


include: "common/data.smk"


if TOY:

    rule world_corpus:
        """The toy world's pretraining corpus: plain sentences that state every ability."""
        output:
            **artifact("results/world/corpus.jsonl"),
        log:
            log_path("world_corpus"),
        benchmark:
            bench_path("world_corpus")
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        params:
            world=world_params("corpus"),
        script:
            "../scripts/world_corpus.py"

    rule world_eval:
        """The toy world's evaluation suites (drawn first, so no training row repeats them)."""
        output:
            **{f"eval_{s}": f"results/world/eval/{s}.jsonl" for s in SUITES},
            **{f"eval_{s}_prov": prov(f"results/world/eval/{s}.jsonl") for s in SUITES},
        log:
            log_path("world_eval"),
        benchmark:
            bench_path("world_eval")
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        params:
            world=world_params("eval"),
        script:
            "../scripts/world_eval.py"

    rule world_dev:
        """The skill suites' development sets, for choosing ω on data no table reports (drawn
        after the whole world, never a test prompt)."""
        output:
            **{f"dev_{s}": dev_suite_path(s) for s in WORLD_SKILLS},
            **{f"dev_{s}_prov": prov(dev_suite_path(s)) for s in WORLD_SKILLS},
        log:
            log_path("world_dev"),
        benchmark:
            bench_path("world_dev")
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        params:
            world=world_params(WORLD_ORDER[-1]),
        script:
            "../scripts/world_dev.py"

    rule world_dataset:
        """One chat dataset of the toy world: the general mix or one skill."""
        output:
            **artifact("results/world/{dataset}.jsonl"),
        log:
            log_path("world_dataset", "{dataset}"),
        benchmark:
            bench_path("world_dataset", "{dataset}")
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        params:
            world=lambda wc: world_params(wc.dataset),
        script:
            "../scripts/world_dataset.py"

    rule world_tokenizer:
        """The word-level tokenizer: every word of the corpus, general mix and eval suites, and
        every word each skill's task family can produce (not the skill datasets themselves, so
        resizing a skill does not change the tokenizer and retrain everything)."""
        input:
            corpus="results/world/corpus.jsonl",
            general="results/world/general.jsonl",
            suites=[f"results/world/eval/{s}.jsonl" for s in SUITES],
        output:
            **artifact("results/world/tokenizer", folder=True),
        log:
            log_path("world_tokenizer"),
        benchmark:
            bench_path("world_tokenizer")
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        params:
            world=world_params("tokenizer"),
        script:
            "../scripts/world_tokenizer.py"

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
        # Downloads run where the network is: on the host that runs Snakemake, never
        # as a cluster job (compute nodes often have no internet).
        localrule: True
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            **family_resources("data"),
        params:
            spec=lambda wc: fetch_params(wc.dataset),
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
        **family_resources("default"),
    params:
        size="{size}",
        seed=lambda wc: dataset_config(wc.dataset)["seed"],
    script:
        "../scripts/subset.py"
