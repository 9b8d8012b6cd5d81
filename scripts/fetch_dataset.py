"""Paper scale: download one hub dataset at a pinned revision and write it as chat JSONL."""

from datasets import load_dataset
from huggingface_hub import HfApi

from mtl.io import write_jsonl
from mtl.provenance import Step
from mtl.sources import normalize
from mtl.stepkit import setup

smk = snakemake
spec = smk.params.spec
# The seed is in the params only where the download samples with it (a per-source cap).
seed = spec.get("seed")
log = setup(smk, seed=seed)

with Step.from_snakemake(smk, seed=seed) as step:
    revision = HfApi().dataset_info(spec["path"], revision=spec["revision"]).sha
    log.info("%s at revision %s", spec["path"], revision)
    rows = load_dataset(spec["path"], spec["name"], split=spec["split"], revision=revision)
    chats = normalize(rows, spec, origin=f"{spec['path']}@{revision}")
    if not chats:
        raise ValueError(f"{spec['path']}: no rows left after the source filters")
    write_jsonl(smk.output.artifact, chats)
    log.info("%d rows -> %s", len(chats), smk.output.artifact)
    step.note(hub={"dataset": spec["path"], "revision": revision}, n_examples=len(chats))
