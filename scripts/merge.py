"""Write one merged model to disk (evaluation sweeps merge in memory and need none of this)."""

from pathlib import Path

from mtl.io import read_jsonl
from mtl.merge import heuristic_omega, merge_to_disk
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
recipe = smk.params.recipe
log = setup(smk, seed=recipe["seed"])
if recipe["weighting"] != "heuristic":
    raise ValueError(f"{smk.output.artifact}: only heuristic-ω merges are written to disk; "
                     "grid sweeps are evaluated in memory")

with Step.from_snakemake(smk, seed=recipe["seed"], config_keys=["merge"]) as step:
    n_general = len(read_jsonl(smk.input.general_data))
    omegas = [heuristic_omega(len(read_jsonl(p)), n_general) for p in smk.input.skill_data]
    (written,) = merge_to_disk(
        recipe["method"],
        Path(smk.input.theta_general),
        [omegas],
        [Path(smk.output.artifact)],
        theta_pre=Path(smk.input.theta_pre),
        task_vectors=[Path(p) for p in smk.input.task_vectors],
        options={"density": recipe["density"], "seed": recipe["seed"],
                 "resize_vocab": recipe["resize_vocab"]},
    )
    log.info("merged at ω = %s -> %s", omegas, smk.output.artifact)
    step.note(omegas=omegas)
