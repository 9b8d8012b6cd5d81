"""Evaluate a trained model, or merges of θ_G with task vectors, on every suite with lm-eval.

For a merge the job loads θ_G once, then for each point (the heuristic ω = |D|/|G| per skill,
or every ω of the grid) sets the weights in place to θ_G + Σ ω_k·τ_k and evaluates, so no
merged model touches the disk.
"""

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mtl.evaluation import Evaluator, check_model_folder, suite_tasks, toy_task_dir
from mtl.io import atomic_dir, read_jsonl, write_json
from mtl.merge import InPlaceMerger, heuristic_omega
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
params = smk.params
# How the coding scorers run model-written programs (mtl.sandbox reads it).
os.environ["MTL_SANDBOX"] = params.sandbox
log = setup(smk, seed=params.seed)
device = "cuda" if torch.cuda.is_available() else "cpu"
is_merge = smk.rule == "evaluate_merge"
model_path = smk.input.theta_general if is_merge else smk.input.model
check_model_folder(model_path)


def heuristic() -> list[float]:
    """ω_k = |D_k|/|G| from the subsets actually trained on (the paper's no-held-out-data rule)."""
    n_general = len(read_jsonl(smk.input.general_data))
    return [heuristic_omega(len(read_jsonl(path)), n_general) for path in smk.input.skill_data]


def merge_points(heuristic_omegas: list[float]) -> list[list[float]]:
    """The ω vectors to evaluate: one heuristic point, or the grid (same ω for each skill)."""
    recipe = params.recipe
    if recipe["weighting"] == "grid":
        return [[omega] * len(recipe["skills"]) for omega in params.recipe["omega_grid"]]
    return [heuristic_omegas]


with Step.from_snakemake(smk, seed=params.seed, config_keys=["evaluation"]) as step:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
    specs = suite_tasks(params.suites, params.tasks)
    heuristic_omegas = heuristic() if is_merge else None
    toy_data = {Path(f).stem: str(f) for f in smk.input.suites}

    with toy_task_dir(toy_data, params.max_gen_toks) as include:
        evaluator = Evaluator(model, tokenizer, specs,
                              include if toy_data else params.include_path,
                              params.batch_size, params.max_gen_toks, params.limit, params.seed)
        if not is_merge:
            points = {"": evaluator.run()}
        else:
            recipe = params.recipe
            merger = InPlaceMerger(model, [Path(p) for p in smk.input.task_vectors],
                                   method=recipe["method"],
                                   options={"density": recipe["density"], "seed": recipe["seed"]})
            omegas = merge_points(heuristic_omegas)
            points = {}
            for index, omega in enumerate(omegas, start=1):
                log.info("point %d/%d: ω = %s", index, len(omegas), omega)
                merger.apply(omega)
                key = "" if recipe["weighting"] == "heuristic" else f"omega-{omega[0]:.2f}"
                points[key] = {"omega": omega, **evaluator.run()}

    with atomic_dir(smk.output.artifact) as tmp:
        summary = []
        for key, results in points.items():
            folder = Path(tmp) / key
            folder.mkdir(parents=True, exist_ok=True)
            for suite in params.suites:
                write_json(folder / f"{suite}.json", results[suite])
            summary.append({
                "point": key or None,
                "omega": results.get("omega"),
                "scores": {s: {"score": results[s]["score"], "stderr": results[s]["stderr"]}
                           for s in params.suites},
            })
        write_json(Path(tmp) / "summary.json", {
            "model": Path(smk.output.artifact).name,
            "recipe": params.recipe if is_merge else None,
            "heuristic_omega": heuristic_omegas,
            "points": summary,
        })
    if is_merge:
        # The merged models were never written; the record says how to re-make each one
        # (`snakemake results/merged/<id>` writes a heuristic-ω merge to disk).
        name = Path(smk.output.artifact).name
        step.note(derived=[{"id": f"{name}@{p['omega']}", "kept": False,
                            "recipe": {**params.recipe, "omega": p["omega"]},
                            **({"path": f"results/merged/{name}"}
                               if params.recipe["weighting"] == "heuristic" else {})}
                           for p in summary],
                  omegas=[p["omega"] for p in summary])
