"""mergekit interop: the recipe of an output, the mergekit 0.1.5 config that re-makes it, and
the model card that shows both."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mtl import __version__
from mtl.merge.methods import Method
from mtl.merge.options import EngineOptions

if TYPE_CHECKING:
    from mtl.merge.engine import Inputs


def portable(path: Path) -> str:
    """A path relative to the working directory where possible: artifacts that name their
    inputs must have the same bytes wherever the repository is checked out."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def describe(
    method: Method,
    inputs: Inputs,
    omega: tuple[float, ...],
    options: EngineOptions,
    dtype: str,
) -> dict[str, Any]:
    skill_paths = [str(c.path) for c in inputs.skills]
    used = {name: getattr(options, name) for name in method.options}
    if options.resize_vocab is not None:
        used["resize_vocab"] = options.resize_vocab
    return {
        "method": method.name,
        "formula": method.formula,
        "omega": list(omega),
        "theta_general": str(inputs.general.path),
        "theta_pre": None if inputs.pre is None else str(inputs.pre.path),
        "task_vectors": skill_paths if inputs.skills_are_tau else [],
        "finetuned": [] if inputs.skills_are_tau else skill_paths,
        "options": used,
        "dtype": dtype,
        "engine": f"mtl.merge {__version__}",
    }


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
    if method.mergekit is None:
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
        f"mergekit {method.mergekit} recipe equivalent to mtl.merge {method.name} at "
        f"omega={list(omega)}.",
        "Re-make with: mergekit-yaml mergekit_config.yml OUTPUT_DIR",
    ]
    config: dict[str, Any]
    if method.skills_as == "theta":
        config = {
            "merge_method": method.mergekit,
            "models": [{"model": theta_g, "parameters": {"weight": 1.0 - sum(omega)}}]
            + [
                {"model": m, "parameters": {"weight": w}}
                for m, w in zip(models, omega, strict=True)
            ],
            "parameters": {"normalize": False},
        }
    else:
        if pre is None:
            return None
        extra = {"density": options.density} if "density" in method.options else {}
        config = {
            "merge_method": method.mergekit,
            "base_model": pre,
            "models": [{"model": theta_g, "parameters": {"weight": 1.0, **extra}}]
            + [
                {"model": m, "parameters": {"weight": w, **extra}}
                for m, w in zip(models, omega, strict=True)
            ],
            "parameters": {"normalize": "normalize" in method.options and options.normalize},
        }
        if "seed" in method.options:
            config["parameters"]["rescale"] = True
            comments.append(
                "Not bit-identical: mergekit draws unseeded DARE masks and rescales survivors "
                "to keep the L1 norm; mtl.merge uses seeded masks and the paper's 1/(1-p)."
            )
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


def model_card(
    out: Path,
    recipe: Mapping[str, Any],
    mergekit_yaml: str | None,
    files: Mapping[str, str],
) -> str:
    inputs = [("θ_G (theta_general)", recipe["theta_general"])]
    if recipe["theta_pre"]:
        inputs.append(("θ_pre (theta_pre)", recipe["theta_pre"]))
    inputs += [(f"τ_{k + 1} (task vector)", p) for k, p in enumerate(recipe["task_vectors"])]
    inputs += [(f"θ_{k + 1} (finetuned)", p) for k, p in enumerate(recipe["finetuned"])]
    lines = [
        "---",
        "library_name: transformers",
        "tags:",
        "- merge",
        "---",
        "",
        f"# {out.name}",
        "",
        f"Merged by `{recipe['engine']}` with **{recipe['method']}**:",
        "",
        f"    {recipe['formula']}",
        "",
        f"ω = {recipe['omega']}; options: {recipe['options'] or 'none'}; "
        f"stored as {recipe['dtype']}, computed in float32.",
        "",
        "| input | path |",
        "|---|---|",
        *(f"| {role} | `{path}` |" for role, path in inputs),
        "",
        "## Re-make with mergekit",
        "",
    ]
    if mergekit_yaml is None:
        lines.append(
            "No mergekit recipe: mergekit lacks the method, or a task vector does not record "
            "the models it came from."
        )
    else:
        lines += ["```yaml", mergekit_yaml.rstrip(), "```"]
    # The files the engine wrote: what a later merge into this folder may replace.
    lines += ["", _FILES_HEADING, "", "| file | hash |", "|---|---|"]
    lines += [f"| `{name}` | `{digest}` |" for name, digest in sorted(files.items())]
    return "\n".join(lines) + "\n"


_MARK = "Merged by `mtl.merge"
_FILES_HEADING = "## Files written by mtl.merge"


def card_files(card: str) -> set[str] | None:
    """The files an mtl.merge model card lists as written by the engine; None if `card` is not
    such a card."""
    if _MARK not in card or _FILES_HEADING not in card:
        return None
    rows = card.split(_FILES_HEADING, 1)[1].splitlines()
    return {row.split("`")[1] for row in rows if row.startswith("| `")}
