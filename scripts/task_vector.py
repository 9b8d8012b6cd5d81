"""τ_D = θ_D − θ_pre, streamed tensor by tensor into one safetensors file."""

from pathlib import Path

from mtl.merge import extract_task_vector
from mtl.preflight import check_disk, weights_bytes
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

# τ is stored in float32: up to twice a bf16 θ_D's bytes.
check_disk(Path(smk.output.artifact).parent, 2 * weights_bytes(Path(smk.input.theta_d)),
           "the float32 task vector")

with Step.from_snakemake(smk, config_keys=["merge.resize_vocab"]) as step:
    # With merge.resize_vocab: pad, θ_pre's missing vocabulary rows get τ = 0 (Llama-2's 32000
    # rows against a Tülu finetune's 32001).
    digest = extract_task_vector(Path(smk.input.theta_pre), Path(smk.input.theta_d),
                                 Path(smk.output.artifact),
                                 resize_vocab=smk.params.resize_vocab)
    step.set_hash(smk.output.artifact, digest)
    log.info("τ -> %s (%s)", smk.output.artifact, digest)
