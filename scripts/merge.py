"""Write one merged model to disk, at the heuristic ω, by the recipe the rule built."""

from pathlib import Path

from mtl.merge import Recipe
from mtl.omega import skill_omegas
from mtl.preflight import check_disk, weights_bytes
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
recipe = Recipe.from_params(smk.params.recipe)
log = setup(smk, seed=recipe.seed)

# The merged model has θ_G's shapes and dtype: room for it before hours of reading.
check_disk(Path(smk.output.artifact).parent, weights_bytes(Path(smk.input.theta_general)),
           "the merged model")

with Step.from_snakemake(smk, seed=recipe.seed, config_keys=["merge"]) as step:
    omegas = skill_omegas(smk.input.skill_data, smk.input.general_data,
                          smk.params.get("omega_sizes"))
    ((_, omega),) = recipe.points(omegas)
    (written,) = recipe.to_disk(smk.input.theta_general, [omega], [Path(smk.output.artifact)],
                                getattr(smk.input, recipe.skill_inputs),
                                smk.input.get("theta_pre"))
    for name, digest in written["files"].items():  # hashed as written: no second read
        step.set_hash(Path(smk.output.artifact) / name, digest)
    log.info("%s at ω = %s -> %s", recipe.method, list(omega), smk.output.artifact)
    step.note(omegas=list(omega))
