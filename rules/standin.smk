"""The stand-in (config/standin.yaml): θ_pre and the four training sets made here, not fetched."""

STANDIN = config["model"]["base"] == "standin"
# Each in its hub dataset's file format (WildJailbreak's train split is a TSV).
STANDIN_SETS = [
    "tulu-v2-sft-mixture.jsonl",
    "SciRIFF.jsonl",
    "CodeFeedback-Filtered-Instruction.jsonl",
    "wildjailbreak.tsv",
]


if STANDIN:

    rule standin:
        """A tiny random Llama-2-shaped θ_pre (BPE, no chat template, no pad) and rows in the
        hub datasets' schemas, which fetch_dataset then loads through `datasets`."""
        output:
            **artifact(THETA_PRE, folder=True),
            **{
                Path(name).stem.replace("-", "_"): f"results/standin/{name}"
                for name in STANDIN_SETS
            },
            **{
                f"{Path(name).stem.replace('-', '_')}_prov": prov(
                    f"results/standin/{name}"
                )
                for name in STANDIN_SETS
            },
        log:
            log_path("standin"),
        benchmark:
            bench_path("standin")
        conda:
            "../envs/train.yaml"
        threads: 1
        resources:
            **family_resources("default"),
        params:
            standin=config["model"]["standin"],
            sets=STANDIN_SETS,
            seed=config["seed"],
            dtype=config["model"]["dtype"],
        script:
            "../scripts/make_standin.py"
