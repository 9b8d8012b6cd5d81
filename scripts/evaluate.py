"""Evaluate a model on every suite with lm-eval: a trained model, or merges of θ_G.

What is evaluated comes from the rule's recipe, not from which rule ran: no recipe, the model
as it is; a recipe, its points (the heuristic ω = |D|/|G| per skill, or every ω of the grid),
each set in place on the loaded θ_G by the merge engine, so no merged model touches the disk.
"""

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mtl import judges
from mtl.evaluation import (
    Evaluator,
    Progress,
    check_model_folder,
    evaluate_points,
    suite_tasks,
    toy_task_dir,
)
from mtl.io import atomic_dir, write_json
from mtl.memplan import evaluation_plan
from mtl.merge import Recipe
from mtl.omega import skill_omegas
from mtl.preflight import check_plan, check_sandbox, gpu_memory
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.training import fingerprint

smk = snakemake
params = smk.params
# How the coding scorers run model-written programs (mtl.sandbox reads it).
os.environ["MTL_SANDBOX"] = params.sandbox
log = setup(smk, seed=params.seed)
device = "cuda" if torch.cuda.is_available() else "cpu"
recipe = None if params.recipe is None else Recipe.from_params(params.recipe)
check_model_folder(smk.input.model)
# Before anything loads: model-written code can run contained, and the job fits its GPU.
if "coding" in params.suites:
    check_sandbox()
if gpu_memory() is not None:
    skills = [] if recipe is None else getattr(smk.input, recipe.skill_inputs)
    check_plan(evaluation_plan(Path(smk.input.model), skills=len(skills),
                               method=recipe.method if recipe else "task_arithmetic",
                               batch_size=params.batch_size,
                               judges=smk.config["evaluation"].get("judges", {}),
                               judge_root=Path(os.environ.get(judges.ENV_DIR, "results/judges"))),
               smk.resources.get("mem_mb"))

with Step.from_snakemake(smk, seed=params.seed, config_keys=["evaluation"]) as step:
    tokenizer = AutoTokenizer.from_pretrained(smk.input.model)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(smk.input.model, dtype=dtype).to(device).eval()
    if device == "cuda":
        # A judge (up to 13B) loads on the GPU while the evaluated model waits on the host.
        judges.make_room(lambda: model.to("cpu"), lambda: model.to(device))
    specs = suite_tasks(params.suites, params.tasks)
    toy_data = {Path(f).stem: str(f) for f in smk.input.suites}
    if recipe is None:
        heuristic, points, merger = None, [("", None)], None
    else:
        heuristic = skill_omegas(smk.input.skill_data, smk.input.general_data,
                                 params.get("omega_sizes"))
        points = recipe.points(heuristic)
        merger = recipe.in_place(model, getattr(smk.input, recipe.skill_inputs),
                                 smk.input.get("theta_pre"))

    with toy_task_dir(toy_data, params.max_gen_toks) as include:
        evaluator = Evaluator(model, tokenizer, specs,
                              include if toy_data else params.include_path,
                              params.batch_size, params.max_gen_toks, params.limit, params.seed,
                              params.get("gen_kwargs"), params.get("backend", "static"))
        # Each finished point (and lm-eval call) is kept: a job stopped in hour 11 reruns only
        # what it had left.
        artifact = Path(smk.output.artifact).as_posix()
        progress = Progress(Path("results/.resume") / artifact.removeprefix("results/"),
                            fingerprint(step.identity, dict(params.items())))
        results = evaluate_points(evaluator, points, merger, progress)

    with atomic_dir(smk.output.artifact) as tmp:
        summary = []
        for key, omega in points:
            folder = Path(tmp) / key
            folder.mkdir(parents=True, exist_ok=True)
            for suite in params.suites:
                write_json(folder / f"{suite}.json", results[key][suite])
            summary.append({
                "point": key or None,
                # The ω the merger applied at this point (None: a model evaluated as it is).
                "omega": None if omega is None else list(omega),
                "scores": {s: {"score": results[key][s]["score"],
                               "stderr": results[key][s]["stderr"]} for s in params.suites},
            })
        write_json(Path(tmp) / "summary.json", {
            "model": Path(smk.output.artifact).name,
            # The seed of this evaluation (and of the trained models and merge it evaluates).
            "seed": params.seed,
            "recipe": params.recipe,
            "heuristic_omega": heuristic,
            "points": summary,
        })
    progress.clear()
    if recipe is not None:
        # The merged models were never written; the record says how to re-make each one
        # (`snakemake results/merged/seed-<N>/<id>` writes a heuristic-ω merge to disk).
        name = Path(smk.output.artifact).name
        merged = Path("results/merged") / Path(smk.output.artifact).parent.name / name
        step.note(derived=[{"id": f"{name}@{p['omega']}", "kept": False,
                            "recipe": {**params.recipe, "omega": p["omega"]},
                            **({"path": merged.as_posix()}
                               if recipe.weighting == "heuristic" else {})}
                           for p in summary],
                  omegas=[p["omega"] for p in summary])
