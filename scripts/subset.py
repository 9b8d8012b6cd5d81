"""Check every row of one chat dataset (mtl.chat.check_rows), then draw a seeded subset (all,
N%, N examples, N per task)."""

from mtl.chat import check_rows
from mtl.io import read_jsonl, write_jsonl
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.subsets import select

smk = snakemake
log = setup(smk, seed=smk.params.seed)
# The chat format the rows will be trained in: the toy world's own, or the one a paper-scale
# base model is given (None: the base model's own template).
chat_format = "toy" if smk.config["scale"] == "toy" else smk.config["model"]["chat_template"]

with Step.from_snakemake(smk, seed=smk.params.seed) as step:
    source = smk.input.source
    rows = read_jsonl(source, required=("messages",))
    usable, dropped = check_rows(rows, source, chat_format)
    if dropped:
        log.warning("%s: %d row(s) dropped for an empty answer: rows %s", source, len(dropped),
                    ", ".join(map(str, dropped[:20])) + (" …" if len(dropped) > 20 else ""))
    dataset = smk.wildcards.dataset
    sizes = "data.general.size" if dataset == "general" else f"data.skills.{dataset}.sizes"
    where = f"{source} (dataset {dataset}, {sizes})"
    chosen = select(usable, smk.params.size, smk.params.seed, origin=where)
    if not chosen:
        raise ValueError(f"{source}: subset {smk.params.size} is empty")
    write_jsonl(smk.output.artifact, chosen)
    log.info("%s: %d of %d rows -> %s", smk.params.size, len(chosen), len(usable),
             smk.output.artifact)
    step.note(n_examples=len(chosen), n_source=len(rows), dropped_empty_answers=len(dropped),
              chat_format=chat_format)
