"""τ_D = θ_D − θ_pre, streamed tensor by tensor into one safetensors file."""

from pathlib import Path

from mtl.merge import extract_task_vector
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk) as step:
    digest = extract_task_vector(Path(smk.input.theta_pre), Path(smk.input.theta_d),
                                 Path(smk.output.artifact))
    step.set_hash(smk.output.artifact, digest)
    log.info("τ -> %s (%s)", smk.output.artifact, digest)
