"""The mergekit 0.1.5 config that re-makes an output, from its method's `Mergekit` mapping."""

from __future__ import annotations

from typing import Any

import yaml

from mtl.merge.card import portable
from mtl.merge.checkpoints import Inputs
from mtl.merge.methods import Method
from mtl.merge.options import EngineOptions


def mergekit_yaml(
    method: Method,
    inputs: Inputs,
    omega: tuple[float, ...],
    options: EngineOptions,
    dtype: str,
) -> str | None:
    """The mergekit 0.1.5 config that re-makes this output, or None if mergekit cannot.

    mergekit merges models, not task vectors: a task vector is replaced by the θ_D (and θ_pre)
    recorded in its metadata by extract_task_vector; without those there is no recipe.
    """
    kit = method.mergekit
    if kit is None or inputs.general is None:
        return None
    if not kit.weighted and any(w != 1 for w in omega):
        return None
    if inputs.skills_are_tau:
        models = [c.metadata.get("theta_d") for c in inputs.skills]
        pre = inputs.skills[0].metadata.get("theta_pre")
    else:
        models = [portable(c.path) for c in inputs.skills]
        pre = None
    if inputs.pre is not None:
        pre = portable(inputs.pre.path)
    if None in models:
        return None
    theta_g = portable(inputs.general.path)
    comments = [
        f"mergekit {kit.name} recipe equivalent to mtl.merge {method.name} at omega={list(omega)}.",
        "Re-make with: mergekit-yaml mergekit_config.yml OUTPUT_DIR",
    ]
    per_model = {kit.renamed.get(n, n): getattr(options, n) for n in kit.model_options}

    # A model's parameters: its weight, where mergekit weighs models, and the per-model options.
    def model(path: str, weight: float) -> dict[str, Any]:
        parameters = {"weight": weight} if kit.weighted else {}
        parameters.update(per_model)
        return {"model": path, "parameters": parameters} if parameters else {"model": path}

    parameters = dict(kit.fixed)
    parameters.update({kit.renamed.get(n, n): getattr(options, n) for n in kit.global_options})
    config: dict[str, Any]
    if method.skills_as == "theta":
        config = {
            "merge_method": kit.name,
            "models": [model(theta_g, 1.0 - sum(omega))]
            + [model(m, w) for m, w in zip(models, omega, strict=True)],
            "parameters": parameters,
        }
    else:
        if pre is None:
            return None
        config = {
            "merge_method": kit.name,
            "base_model": pre,
            "models": [model(theta_g, 1.0)]
            + [model(m, w) for m, w in zip(models, omega, strict=True)],
            "parameters": parameters,
        }
    if kit.note is not None:
        comments.append(kit.note)
    config["dtype"] = "float32"
    config["out_dtype"] = dtype
    if options.resize_vocab is not None:
        config["tokenizer_source"] = theta_g
        comments.append(
            "Vocabularies differ: mtl.merge padded missing rows with theta_G's rows (task "
            "vectors with zeros); mergekit's tokenizer_source may fill new rows differently."
        )
    header = "".join(f"# {line}\n" for line in comments)
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
