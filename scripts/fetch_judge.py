"""Paper scale: a judge model (ToxiGen RoBERTa, HarmBench classifier, TruthfulQA judges) as a hub
snapshot at a pinned revision; evaluation jobs load it from results/judges/<key>."""

from huggingface_hub import HfApi, snapshot_download

from mtl.io import atomic_dir
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
spec = smk.params.spec
log = setup(smk)

with Step.from_snakemake(smk) as step:
    info = HfApi().model_info(spec["repo"], revision=spec["revision"], files_metadata=False)
    files = [s.rfilename for s in info.siblings or []]
    # Prefer safetensors; some judges (the ToxiGen RoBERTa) publish only PyTorch .bin weights,
    # which transformers loads with weights_only=True.
    weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
    log.info("%s at revision %s (%s)", spec["repo"], info.sha, weights[0])
    with atomic_dir(smk.output.artifact) as tmp:
        snapshot_download(spec["repo"], revision=info.sha, local_dir=tmp,
                          allow_patterns=["*.json", "*.model", "*.txt", *weights])
    step.note(hub={"model": spec["repo"], "revision": info.sha})
