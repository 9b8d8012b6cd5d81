"""What an output says about itself: its model card, which shows the recipe and lists
the files the engine wrote (so a later merge knows what it may replace)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def portable(path: Path) -> str:
    """A path relative to the working directory where possible: artifacts that name their
    inputs must have the same bytes wherever the repository is checked out."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


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
            "No mergekit recipe: mergekit lacks the method, or does not weigh the models and "
            "ω is not 1, or a task vector does not record the models it came from."
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
