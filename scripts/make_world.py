"""Generate the toy world: corpus, general mix, skills, evaluation suites and the tokenizer."""

from mtl.io import atomic_dir, write_jsonl
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.toy_model import build_tokenizer
from mtl.world import SKILLS, WorldSpec, build_world

smk = snakemake
spec = WorldSpec(**smk.params.world)
log = setup(smk, seed=spec.seed)
unknown = sorted(set(smk.params.skills) - set(SKILLS))
if unknown:
    raise ValueError(f"config data.skills: the toy world has no skill(s) {unknown}; "
                     f"it has {SKILLS}")

with Step.from_snakemake(smk, seed=spec.seed, config_keys=["world"]) as step:
    world = build_world(spec)
    declared = set(smk.output.keys())
    for name, rows in world.items():
        if name not in declared:  # a skill or suite this config leaves out
            continue
        write_jsonl(smk.output[name], rows)
        log.info("%s: %d rows -> %s", name, len(rows), smk.output[name])
    texts = [row["text"] for row in world["corpus"]]
    texts += [m["content"] for name, rows in world.items() if name != "corpus"
              for row in rows for m in row["messages"]]
    tokenizer = build_tokenizer(texts)
    with atomic_dir(smk.output.tokenizer) as tmp:
        tokenizer.save_pretrained(tmp)
    log.info("tokenizer: %d tokens", len(tokenizer))
    step.note(rows={name: len(rows) for name, rows in world.items()}, vocab=len(tokenizer))
