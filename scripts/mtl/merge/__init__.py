"""Merge engine: every model merge of the workflow ("Merge to Learn", Morrison et al. 2024).

Notation follows the paper. θ_pre (`theta_pre`) is the pretrained model, θ_G (`theta_general`)
θ_pre finetuned on the general mix, θ_D a model finetuned on skill D, τ_D = θ_D − θ_pre its task
vector (`tau`) and ω (`omega`) the weight of a skill. Every method of `METHODS` works on one
tensor name at a time, in float32, and the result is cast back to θ_G's stored dtype.

Modules: `options` (EngineOptions, the method options, MergeError), `safetensors` (reading and
streamed writing), `inputs` (what a method sees of one tensor), `methods` (the registry, one
module per family of methods), `checks` (inputs and outputs, from headers, before any tensor
is read), `checkpoints` (the opened inputs of one merge), `engine` (task vectors and merged
models written in one pass), `inplace` (a loaded model set to grid points), `card` (model
cards), `mergekit` (mergekit configs) and `recipe` (one recipe from the workflow's config to
the engine, the config schema of the `merge` section, the heuristic ω). docs/merge-engine.md
describes them.
"""

from mtl.merge.engine import extract_task_vector, merge_to_disk
from mtl.merge.inplace import InPlaceMerger
from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import METHODS, Method, method_named
from mtl.merge.options import OPTIONS, EngineOptions, MergeError, Option
from mtl.merge.recipe import Recipe, heuristic_omega, heuristic_omegas

__all__ = [
    "METHODS",
    "OPTIONS",
    "EngineOptions",
    "InPlaceMerger",
    "MergeError",
    "Method",
    "Option",
    "Recipe",
    "TensorInputs",
    "extract_task_vector",
    "heuristic_omega",
    "heuristic_omegas",
    "merge_to_disk",
    "method_named",
]
