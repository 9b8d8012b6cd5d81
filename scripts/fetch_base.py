"""Paper scale: θ_pre is a hub snapshot (weights, config, tokenizer) at a pinned revision
(the config's commit, or the one config/hub-lock holds: mtl.pins).

Its weights are stored in model.dtype, the dtype every trained model is saved in, so that
task vectors τ = θ_D − θ_pre compare like with like (Llama-2-7b-hf ships float16; the
finetuned models are bfloat16). Training starts from exactly these stored weights.
"""

import json
import shutil
from pathlib import Path

import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import load_file, save_file

from mtl.io import atomic_dir
from mtl.pins import LOCK_DIR, resolve
from mtl.preflight import check_token
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
params = smk.params
log = setup(smk)
dtype = getattr(torch, params.dtype)

with Step.from_snakemake(smk) as step:
    revision, pinned_by = resolve(
        "model", params.base, params.revision, LOCK_DIR,
        lambda rev: HfApi().model_info(params.base, revision=rev).sha)
    log.info("%s at revision %s (%s)", params.base, revision, pinned_by)
    # Llama-2 is gated: without a token the download would fail after the metadata.
    check_token(params.base, HfApi().model_info(params.base, revision=revision).gated)
    with atomic_dir(smk.output.artifact) as tmp:
        # safetensors only: the merge engine refuses pickle checkpoints.
        snapshot_download(params.base, revision=revision, local_dir=tmp,
                          allow_patterns=["*.json", "*.safetensors", "tokenizer*"])
        converted = []
        for shard in sorted(Path(tmp).glob("*.safetensors")):
            tensors = load_file(shard)
            if any(t.is_floating_point() and t.dtype != dtype for t in tensors.values()):
                save_file({k: t.to(dtype) if t.is_floating_point() else t
                           for k, t in tensors.items()}, shard, metadata={"format": "pt"})
                converted.append(shard.name)
        if converted:
            config_path = Path(tmp) / "config.json"
            config = json.loads(config_path.read_text())
            config["torch_dtype"] = params.dtype
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            log.info("stored in %s: %s", params.dtype, ", ".join(converted))
        # The download cache inside the snapshot folder is not part of the model.
        shutil.rmtree(Path(tmp) / ".cache", ignore_errors=True)
    step.note(hub={"model": params.base, "revision": revision, "pinned_by": pinned_by},
              stored_dtype=params.dtype)
