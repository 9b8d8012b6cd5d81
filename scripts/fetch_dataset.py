"""Paper scale: load one dataset through `datasets` and write it as the toy world's chat JSONL.

From the hub at a pinned revision, or (the stand-in, or a site's own copy in the hub's schema)
from local files with `data_files` and a builder name as `path` (json, csv, parquet).
"""

from datasets import load_dataset

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
    if spec.get("data_files"):
        files = list(smk.input)
        rows = load_dataset(spec["path"], spec["name"], data_files=files, split=spec["split"])
        origin = ", ".join(files)
        step.note(local={"builder": spec["path"], "files": files})
    else:
        from huggingface_hub import HfApi

        revision = HfApi().dataset_info(spec["path"], revision=spec["revision"]).sha
        log.info("%s at revision %s", spec["path"], revision)
        rows = load_dataset(spec["path"], spec["name"], split=spec["split"], revision=revision)
        origin = f"{spec['path']}@{revision}"
        step.note(hub={"dataset": spec["path"], "revision": revision})
    chats = normalize(rows, spec, origin=origin)
    if not chats:
        raise ValueError(f"{origin}: no rows left after the source filters")
    write_jsonl(smk.output.artifact, chats)
    log.info("%d of %d rows -> %s", len(chats), len(rows), smk.output.artifact)
    step.note(n_examples=len(chats))
