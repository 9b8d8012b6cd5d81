"""The stand-in's θ_pre (random tiny Llama-2 shape, BPE without template or pad) and data."""

import csv
from pathlib import Path

import torch

from mtl.io import atomic_dir, atomic_file, write_jsonl
from mtl.provenance import Step
from mtl.standin import build_model, build_tokenizer, corpus_texts, datasets
from mtl.stepkit import setup


def write_tsv(path: str, rows: list[dict]) -> None:
    with atomic_file(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


smk = snakemake
spec = smk.params.standin
log = setup(smk, seed=smk.params.seed)

with Step.from_snakemake(smk, seed=smk.params.seed, config_keys=["model"]) as step:
    tables = datasets(spec["rows"], smk.params.seed)
    for name in smk.params.sets:
        # Each set in its hub file format: JSON lines, or WildJailbreak's TSV.
        stem, suffix = Path(name).stem, Path(name).suffix
        path = smk.output[stem.replace("-", "_")]
        if suffix == ".tsv":
            write_tsv(path, tables[stem])
        else:
            write_jsonl(path, tables[stem])
        log.info("%s: %d rows", name, len(tables[stem]))
    tokenizer = build_tokenizer(corpus_texts(tables), spec["vocab"])
    model = build_model(tokenizer, spec["hidden"], spec["layers"], spec["heads"],
                        spec["kv_heads"], spec["intermediate"], spec["max_positions"])
    # Stored in model.dtype, as fetch_base stores the hub's θ_pre and training its models.
    model.to(getattr(torch, smk.params.dtype))
    with atomic_dir(smk.output.artifact) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    log.info("θ_pre: %d tokens, %.2fM parameters", len(tokenizer),
             sum(p.numel() for p in model.parameters()) / 1e6)
    step.note(vocab=len(tokenizer), parameters=sum(p.numel() for p in model.parameters()))
