"""Paper scale: a judge model (ToxiGen RoBERTa, HarmBench classifier, TruthfulQA judges) as a hub
snapshot at a commit: mtl.judges' pin, or the one config/hub-lock holds (the first fetch writes it;
mtl.pins); evaluation jobs load it from results/judges/<key>. With `evaluation.standin` (tests,
CI) a tiny random model of the judge's architecture is written instead."""

from pathlib import Path

from huggingface_hub import HfApi, snapshot_download

from mtl.io import atomic_dir
from mtl.paper_standin import write_judge
from mtl.pins import LOCK_DIR, resolve
from mtl.preflight import check_token
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
spec = smk.params.spec
log = setup(smk)


def fetch_from_hub(step: Step) -> None:
    def lookup(revision: str | None) -> str:
        return HfApi().model_info(spec["repo"], revision=revision).sha

    revision, pinned_by = resolve("model", spec["repo"], spec["revision"], LOCK_DIR, lookup)
    info = HfApi().model_info(spec["repo"], revision=revision, files_metadata=False)
    check_token(spec["repo"], info.gated)
    files = [s.rfilename for s in info.siblings or []]
    # Prefer safetensors; some judges (the ToxiGen RoBERTa) publish only PyTorch .bin weights,
    # which transformers loads with weights_only=True.
    weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
    log.info("%s at %s (%s; %s)", spec["repo"], revision, pinned_by, weights[0])
    with atomic_dir(smk.output.artifact) as tmp:
        snapshot_download(spec["repo"], revision=revision, local_dir=tmp,
                          allow_patterns=["*.json", "*.model", "*.txt", *weights])
    step.note(hub={"model": spec["repo"], "revision": revision, "pinned_by": pinned_by})


with Step.from_snakemake(smk) as step:
    if spec.get("standin"):
        with atomic_dir(smk.output.artifact) as tmp:
            write_judge(smk.wildcards.judge, Path(tmp))
        step.note(standin=True)
    else:
        fetch_from_hub(step)
