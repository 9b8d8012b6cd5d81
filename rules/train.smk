"""Models: θ_pre (trained on the toy corpus, fetched, or the stand-in's), θ_G, every regime."""


include: "common/train.smk"


if TOY:

    rule pretrain:
        """θ_pre: a small Llama trained from scratch on the world's plain-sentence corpus."""
        input:
            corpus="results/world/corpus.jsonl",
            tokenizer="results/world/tokenizer",
        output:
            **artifact(THETA_PRE, folder=True),
        log:
            log_path("pretrain"),
        benchmark:
            bench_path("pretrain")
        conda:
            "../envs/train.yaml"
        threads: res("pretrain", "threads")
        resources:
            **family_resources("pretrain"),
        params:
            **train_params("pretrain"),
            regime="pretrain",
            architecture=config["model"]["toy"],
            resume_dir="results/.resume/pretrained",
        script:
            "../scripts/train.py"

elif not STANDIN:

    rule fetch_base:
        """θ_pre: a hub snapshot at a pinned revision (Llama-2-7B at paper scale)."""
        output:
            **artifact(THETA_PRE, folder=True),
        log:
            log_path("fetch_base"),
        benchmark:
            bench_path("fetch_base")
        # Downloads run where the network is: on the host that runs Snakemake, never
        # as a cluster job (compute nodes often have no internet).
        localrule: True
        conda:
            "../envs/train.yaml"
        threads: 1
        resources:
            **family_resources("data"),
        params:
            base=config["model"]["base"],
            revision=config["model"]["revision"],
            dtype=config["model"]["dtype"],
        script:
            "../scripts/fetch_base.py"


rule train_general:
    """θ_G: θ_pre finetuned on the general mix G."""
    input:
        init=THETA_PRE,
        data=general_subset(),
    output:
        **artifact(THETA_G, folder=True),
    log:
        log_path("train_general"),
    benchmark:
        bench_path("train_general")
    conda:
        "../envs/train.yaml"
    threads: res("finetune", "threads")
    resources:
        **family_resources("finetune"),
    params:
        **train_params("finetune"),
        **finetune_params(),
        regime="general",
        resume_dir="results/.resume/general",
    script:
        "../scripts/train.py"


rule train_regime:
    """θ_D (ptm), θ_CFT (cft), θ_RT (rt) or θ_CFT on D plus as much G (cft-match), at one
    seed; on one skill, or on the union of several (a skillset: Table 4's CFT and RT).
    """
    input:
        unpack(regime_inputs),
    output:
        **artifact(model_dir("seed-{seed}/{regime}-{skillset}"), folder=True),
    log:
        log_path("train_regime", "seed-{seed}", "{regime}", "{skillset}"),
    benchmark:
        bench_path("train_regime", "seed-{seed}", "{regime}", "{skillset}")
    conda:
        "../envs/train.yaml"
    threads: res("finetune", "threads")
    resources:
        **family_resources("finetune"),
    params:
        **train_params("finetune", seed=wildcard_seed),
        **finetune_params(),
        regime="{regime}",
        resume_dir="results/.resume/seed-{seed}/{regime}-{skillset}",
    script:
        "../scripts/train.py"
