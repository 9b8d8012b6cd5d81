"""The checkpoints one merge reads: opened, checked against the reference's headers, and read
tensor by tensor (or by blocks of rows) as `TensorInputs`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtl import __version__
from mtl.merge.checks import check_config, check_tensors
from mtl.merge.inputs import Scratch, Source, TensorInputs
from mtl.merge.methods import Method, check_skills
from mtl.merge.options import EngineOptions, MergeError
from mtl.merge.safetensors import Checkpoint, Rows, Spec


def block_shape(shape: tuple[int, ...], rows: Rows) -> tuple[int, ...]:
    return shape if rows is None else (rows[1] - rows[0], *shape[1:])


@dataclass
class Inputs:
    """The checkpoints a merge reads: θ_G (None in place, where the model holds θ_G), θ_pre
    when the merge needs it, and the skill inputs (task vectors or finetuned models)."""

    general: Checkpoint | None
    pre: Checkpoint | None
    skills: list[Checkpoint]
    skills_are_tau: bool

    def close(self) -> None:
        for checkpoint in (self.general, self.pre, *self.skills):
            if checkpoint is not None:
                checkpoint.close()

    def block(
        self,
        name: str,
        rows: Rows,
        shape: tuple[int, ...],
        options: EngineOptions,
        scratch: Scratch,
    ) -> TensorInputs:
        """The inputs of tensor `name` (of `shape`), or of a block of its rows."""
        rows_shape = block_shape(shape, rows)

        def source(checkpoint: Checkpoint, is_model: bool) -> Source:
            nbytes = math.prod(rows_shape) * checkpoint.tensors[name].dtype.itemsize

            def read() -> torch.Tensor:
                # One raw buffer serves every input: TensorInputs upcasts each read at once.
                return checkpoint.read(name, rows, scratch.get("raw", (nbytes,), dtype=torch.uint8))

            return Source(read, checkpoint.label, is_model)

        assert self.general is not None, "in-place merges build TensorInputs themselves"
        return TensorInputs(
            name,
            rows_shape,
            general=source(self.general, True),
            pre=None if self.pre is None else source(self.pre, True),
            skills=[source(c, not self.skills_are_tau) for c in self.skills],
            skills_are_tau=self.skills_are_tau,
            options=options,
            scratch=scratch,
        )

    def describe(
        self, method: Method, omega: tuple[float, ...], options: EngineOptions, dtype: str
    ) -> dict[str, Any]:
        """The recipe of one output (its model card's and its provenance record's)."""
        assert self.general is not None, "in-place merges write no output folder"
        skill_paths = [str(c.path) for c in self.skills]
        used = {name: getattr(options, name) for name in method.options}
        if options.resize_vocab is not None:
            used["resize_vocab"] = options.resize_vocab
        return {
            "method": method.name,
            "formula": method.formula,
            "omega": list(omega),
            "theta_general": str(self.general.path),
            "theta_pre": None if self.pre is None else str(self.pre.path),
            "task_vectors": skill_paths if self.skills_are_tau else [],
            "finetuned": [] if self.skills_are_tau else skill_paths,
            "options": used,
            "dtype": dtype,
            "engine": f"mtl.merge {__version__}",
        }


def open_inputs(
    method: Method,
    reference: Mapping[str, Spec],
    ref_config: Mapping | None,
    ref_label: str,
    *,
    general: Checkpoint | None,
    theta_pre: Path | None,
    task_vectors: Sequence[Path],
    finetuned: Sequence[Path],
    options: EngineOptions,
) -> Inputs:
    """Open θ_pre and the skill inputs and check them against the reference's headers."""
    if bool(task_vectors) == bool(finetuned):
        raise MergeError("give the skills either as task_vectors or as finetuned models (one)")
    skills_are_tau = bool(task_vectors)
    check_skills(method, len(task_vectors or finetuned))
    # τ_k from θ_k, or θ_k from τ_k, needs θ_pre as much as TIES and DARE do.
    needs_pre = method.needs_theta_pre or skills_are_tau != (method.skills_as == "tau")
    if needs_pre and theta_pre is None:
        given = "task vectors" if skills_are_tau else "finetuned models"
        raise MergeError(f"method {method.name!r} with {given} needs theta_pre")
    inputs = Inputs(general, None, [], skills_are_tau)
    try:
        if needs_pre:
            inputs.pre = Checkpoint(theta_pre, "theta_pre")
        role = "task_vectors" if skills_are_tau else "finetuned"
        for k, path in enumerate(task_vectors or finetuned):
            inputs.skills.append(Checkpoint(path, f"{role}[{k}]"))
        for checkpoint in (inputs.pre, *inputs.skills):
            if checkpoint is None:
                continue
            is_model = checkpoint is inputs.pre or not skills_are_tau
            check_config(ref_config, ref_label, checkpoint)
            check_tensors(reference, ref_label, checkpoint, is_model=is_model, options=options)
    except BaseException:
        inputs.close()
        raise
    return inputs
