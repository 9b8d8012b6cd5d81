"""Checks of merge inputs (from their headers) and outputs, before any tensor is read."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from mtl.merge.card import card_files
from mtl.merge.options import EngineOptions, MergeError
from mtl.merge.safetensors import Checkpoint, Spec

ARCH_KEYS = (
    "model_type",
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)


def check_config(reference: Mapping | None, ref_label: str, other: Checkpoint) -> None:
    if reference is None:
        return
    if other.config is not None:
        for key in ARCH_KEYS:
            if key in reference and key in other.config and reference[key] != other.config[key]:
                raise MergeError(
                    f"{other.label}: config.json has {key}={other.config[key]!r} but {ref_label} "
                    f"has {reference[key]!r}; different architectures cannot be merged"
                )
    model_type = other.metadata.get("model_type")
    if model_type and reference.get("model_type") and model_type != reference["model_type"]:
        raise MergeError(
            f"{other.label}: metadata model_type={model_type!r} but {ref_label} has "
            f"{reference['model_type']!r}; different architectures cannot be merged"
        )


def check_floating(specs: Mapping[str, Spec], label: str) -> None:
    for name, spec in specs.items():
        if not spec.dtype.is_floating_point:
            raise MergeError(
                f"{label}: tensor {name!r} has dtype {spec.dtype}; only floating-point tensors "
                "can be merged"
            )


def check_shape(
    name: str,
    ref_shape: tuple[int, ...],
    ref_label: str,
    shape: tuple[int, ...],
    label: str,
    options: EngineOptions,
) -> None:
    if shape == ref_shape:
        return
    what = (
        f"tensor {name!r} has shape {list(shape)} in {label} but {list(ref_shape)} in {ref_label}"
    )
    is_vocab = any(name.endswith(suffix) for suffix in options.vocab_tensors)
    if not (is_vocab and len(shape) == len(ref_shape) >= 1 and shape[1:] == ref_shape[1:]):
        raise MergeError(f"{what}: shape mismatch")
    if options.resize_vocab is None:
        raise MergeError(
            f"{what}: the vocabulary sizes differ; pass options resize_vocab='pad' to give the "
            "smaller vocabulary the reference's extra rows"
        )
    if shape[0] > ref_shape[0]:
        raise MergeError(
            f"{what}: more vocabulary rows than the reference, whose tokenizer the output keeps"
        )


def check_tensors(
    reference: Mapping[str, Spec],
    ref_label: str,
    other: Checkpoint,
    *,
    is_model: bool,
    options: EngineOptions,
) -> None:
    """Same tensor names and shapes as the reference; models also the same dtypes.

    A task vector may be stored in any float dtype (extract_task_vector writes float32).
    """
    for name in reference:
        if name not in other.tensors:
            raise MergeError(f"{other.label}: tensor {name!r} is missing (it is in {ref_label})")
    for name in other.tensors:
        if name not in reference:
            raise MergeError(f"{other.label}: extra tensor {name!r} (not in {ref_label})")
    check_floating({n: Spec(i.dtype, i.shape) for n, i in other.tensors.items()}, other.label)
    for name, spec in reference.items():
        info = other.tensors[name]
        if is_model and info.dtype != spec.dtype:
            raise MergeError(
                f"{other.label}: tensor {name!r} is stored as {info.dtype} but as {spec.dtype} "
                f"in {ref_label}; dtype mismatch"
            )
        check_shape(name, spec.shape, ref_label, info.shape, other.label, options)


def weight_rows(settings: Sequence[Sequence[float] | float], n_skills: int) -> list[tuple]:
    """Each setting as a tuple of n_skills finite floats; a bare number is a 1-skill setting."""
    rows = []
    for i, setting in enumerate(settings):
        row = (setting,) if isinstance(setting, (int, float)) else tuple(setting)
        if len(row) != n_skills:
            raise MergeError(
                f"settings[{i}]={setting!r} has {len(row)} weight(s) for {n_skills} skill input(s)"
            )
        try:
            row = tuple(float(w) for w in row)
        except (TypeError, ValueError):
            raise MergeError(f"settings[{i}]={setting!r} is not a list of numbers") from None
        if not all(math.isfinite(w) for w in row):
            raise MergeError(f"settings[{i}]={setting!r} is not finite")
        rows.append(row)
    if not rows:
        raise MergeError("no weight settings given")
    return rows


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _check_output_path(out: Path, inputs: Sequence[Path], what: str) -> None:
    """Refuse an output that is (or holds) the working directory or overlaps an input, or
    whose parent is a file."""
    resolved, cwd = out.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise MergeError(
            f"{what} {out} is the working directory or holds it; give a path of its own"
        )
    for path in inputs:
        if _overlaps(resolved, Path(path).resolve()):
            raise MergeError(f"{what} {out} would overwrite input {path}")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise MergeError(f"{what} {out}: {parent} is a file, not a folder")


def check_out_dirs(out_dirs: Sequence[Path], n_settings: int, inputs: Sequence[Path]) -> None:
    """Output folders must be new, empty, or an earlier output of this engine holding only
    the files its model card lists: nothing else is ever replaced."""
    if len(out_dirs) != n_settings:
        raise MergeError(f"{len(out_dirs)} output folders for {n_settings} weight settings")
    resolved = [d.resolve() for d in out_dirs]
    if len(set(resolved)) != len(resolved):
        raise MergeError(f"output folders repeat: {[str(d) for d in out_dirs]}")
    for out in out_dirs:
        _check_output_path(out, inputs, "output folder")
        if out.exists() and not out.is_dir():
            raise MergeError(f"output folder {out} is a file; refusing to replace it")
        present = {p.name for p in out.iterdir()} if out.is_dir() else set()
        if not present:
            continue
        card = out / "README.md"
        listed = card_files(card.read_text(errors="replace")) if card.is_file() else None
        if listed is None:
            raise MergeError(
                f"output folder {out} is not empty and not an earlier output of mtl.merge "
                "(its README.md is not an mtl.merge model card); refusing to replace it"
            )
        extra = sorted(present - listed - {"README.md"})
        if extra:
            raise MergeError(
                f"output folder {out} is an earlier mtl.merge output but also holds {extra}, "
                "which the merge did not write; move them away first"
            )


def check_out_file(out: Path, inputs: Sequence[Path]) -> None:
    """A task vector's output file must be new or an earlier task vector of this engine."""
    _check_output_path(out, inputs, "output file")
    if out.is_dir():
        raise MergeError(f"output file {out} is a folder; refusing to replace it")
    if not out.exists():
        return
    try:
        earlier = Checkpoint(out, "output").metadata.get("mtl_kind") == "task_vector"
    except MergeError:
        earlier = False
    if not earlier:
        raise MergeError(
            f"output file {out} exists and is not an earlier task vector of mtl.merge; "
            "refusing to replace it"
        )
