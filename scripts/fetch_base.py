"""Paper scale: θ_pre is a hub snapshot (weights, config, tokenizer) at a pinned revision."""

from huggingface_hub import HfApi, snapshot_download

from mtl.io import atomic_dir
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
params = smk.params
log = setup(smk)

with Step.from_snakemake(smk) as step:
    revision = HfApi().model_info(params.base, revision=params.revision).sha
    log.info("%s at revision %s", params.base, revision)
    with atomic_dir(smk.output.artifact) as tmp:
        # safetensors only: the merge engine refuses pickle checkpoints.
        snapshot_download(params.base, revision=revision, local_dir=tmp,
                          allow_patterns=["*.json", "*.safetensors", "tokenizer*"])
    step.note(hub={"model": params.base, "revision": revision})
