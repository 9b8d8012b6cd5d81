"""The toy world's development sets of the skill suites (rule world_dev): outputs
`dev_<skill>`, each with its record `dev_<skill>_prov`. Params: `world`, the world keys they
depend on (the whole draw: they avoid its test prompts)."""

from mtl.devsets import build_dev, dev_overlap
from mtl.io import write_jsonl
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.world import WorldSpec, build_world

smk = snakemake
log = setup(smk, seed=smk.params.world["seed"])

with Step.from_snakemake(smk, seed=smk.params.world["seed"]) as step:
    spec = WorldSpec(**smk.config["world"])
    world = build_world(spec)
    dev = build_dev(spec, world)
    for name, path in smk.output.items():
        if not name.endswith("_prov"):
            write_jsonl(path, dev[name])
    rows = {name: len(part) for name, part in dev.items()}
    overlap = dev_overlap(world, dev)
    log.info("rows: %s; repeating a training prompt: %s", rows, overlap)
    step.note(rows=rows, repeats_training_prompt=overlap)
