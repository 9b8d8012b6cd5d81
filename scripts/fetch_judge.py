"""Paper scale: a judge model (ToxiGen RoBERTa, HarmBench classifier, TruthfulQA judges) as a hub
snapshot at a pinned revision; evaluation jobs load it from results/judges/<key>. A `standin`
entry (tests, CI) writes a tiny random model of the judge's architecture instead."""

from pathlib import Path

from huggingface_hub import HfApi, snapshot_download

from mtl.io import atomic_dir
from mtl.paper_standin import write_judge
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
spec = smk.params.spec
log = setup(smk)



def fetch_from_hub(step: Step) -> None:
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


with Step.from_snakemake(smk) as step:
    if spec.get("standin"):
        with atomic_dir(smk.output.artifact) as tmp:
            write_judge(smk.wildcards.judge, Path(tmp))
        step.note(standin=True)
    else:
        fetch_from_hub(step)
