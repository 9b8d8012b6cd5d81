"""Draw a seeded subset (all, N%, N examples, N per task) of one chat dataset."""

from mtl.io import read_jsonl, write_jsonl
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.subsets import select

smk = snakemake
log = setup(smk, seed=smk.params.seed)

with Step.from_snakemake(smk, seed=smk.params.seed) as step:
    rows = read_jsonl(smk.input.source, required=("messages",))
    chosen = select(rows, smk.params.size, smk.params.seed)
    if not chosen:
        raise ValueError(f"{smk.input.source}: subset {smk.params.size} is empty")
    write_jsonl(smk.output.artifact, chosen)
    log.info("%s: %d of %d rows -> %s", smk.params.size, len(chosen), len(rows),
             smk.output.artifact)
    step.note(n_examples=len(chosen), n_source=len(rows))
