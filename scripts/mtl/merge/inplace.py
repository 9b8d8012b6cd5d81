"""The in-place merger: a loaded model set to one grid point after another, without disk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mtl.merge.checkpoints import open_inputs
from mtl.merge.checks import check_floating, weight_rows
from mtl.merge.inputs import Scratch, Source, TensorInputs, check_range
from mtl.merge.methods import method_named
from mtl.merge.options import EngineOptions, MergeError
from mtl.merge.safetensors import Checkpoint, Spec


def _file_names(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The model's parameters by their names in its safetensors files.

    transformers 5 renames some checkpoint keys on load (GPT-NeoX stores `embed_out.weight`
    and holds it as `lm_head.weight`); its reverse mapping, the one save_pretrained applies,
    gives the file names back. It returns renamed parameters as the same tensor objects, which
    is how each file name finds its parameter. A parameter converted beyond a rename (fused or
    split between file and memory) has no file tensor of its own to merge with.
    """
    params = dict(model.named_parameters())
    try:
        from transformers import PreTrainedModel
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # a transformers without key conversions names files as in memory
        return params
    if not isinstance(model, PreTrainedModel):
        return params
    with torch.no_grad():
        reverted = revert_weight_conversion(model, dict(params))
    by_identity = {id(tensor): file for file, tensor in reverted.items()}
    named = {}
    for name, param in params.items():
        file = by_identity.get(id(param))
        if file is None:
            raise MergeError(
                f"the model's parameter {name!r} is converted (not only renamed) between its "
                "files and memory; merge on disk (merge_to_disk) instead"
            )
        named[file] = param
    return named


class InPlaceMerger:
    """Set a loaded model's parameters to grid points of a merge, without touching disk.

    `model` holds θ_G when the merger is built. The merger keeps a copy of θ_G and the skill
    inputs (and θ_pre, if the merge needs it) in their stored dtypes in host memory; `apply(ω)`
    streams them to each parameter's device one tensor at a time and recomputes the parameter
    there in float32, so grid points never accumulate: apply(ω1); apply(ω2) equals apply(ω2) on
    a fresh θ_G. Memory: θ_G's copy plus the inputs on the host; on the model's device only the
    model and the method's float32 scratch buffers (a few tensors of the largest shape), so a 7B
    model merged with three float32 task vectors (≈ 95 GB of inputs) fits one 80 GB GPU. The
    host copies are not pinned: torch's pinned allocator rounds each block up to a power of
    two (up to twice the memory), and copying a grid point's ≈ 95 GB from pageable memory
    takes seconds against the minutes its evaluation takes. `restore()`
    puts θ_G back. A model on the meta device gets meta copies and reads nothing (the memory
    plan, mtl.memplan, sums them).

    Arguments as merge_to_disk's; options other than the method's are ignored.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task_vectors: Sequence[Path] = (),
        *,
        method: str = "task_arithmetic",
        finetuned: Sequence[Path] = (),
        theta_pre: Path | None = None,
        options: Mapping[str, Any] | EngineOptions = {},  # noqa: B006 - never mutated
    ) -> None:
        self.method = method_named(method)
        self.options = EngineOptions.of(options)
        # Keyed by the names in the model's files, which the inputs share.
        self._params = _file_names(model)
        specs = {name: Spec(p.dtype, tuple(p.shape)) for name, p in self._params.items()}
        check_floating(specs, "model")
        config = model.config.to_dict() if hasattr(model, "config") else None
        label = f"the model ({type(model).__name__})"
        inputs = open_inputs(
            self.method,
            specs,
            config,
            label,
            general=None,
            theta_pre=None if theta_pre is None else Path(theta_pre),
            task_vectors=[Path(p) for p in task_vectors],
            finetuned=[Path(p) for p in finetuned],
            options=self.options,
        )
        try:
            self._general = {name: _hold(p.detach()) for name, p in self._params.items()}
            self._pre = None if inputs.pre is None else self._load(inputs.pre)
            self._skills = [self._load(c) for c in inputs.skills]
        finally:
            inputs.close()
        self._labels = {
            "theta_general": label,
            "theta_pre": None if inputs.pre is None else inputs.pre.label,
            "skills": [c.label for c in inputs.skills],
        }
        self._skills_are_tau = inputs.skills_are_tau
        self._scratch = Scratch()

    def _load(self, checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
        held = {}
        for name, param in self._params.items():
            if param.is_meta:
                info = checkpoint.tensors[name]
                held[name] = torch.empty(info.shape, dtype=info.dtype, device="meta")
            else:
                held[name] = _hold(checkpoint.read(name))
        return held

    def held(self) -> list[torch.Tensor]:
        """Every copy the merger holds (θ_G's, θ_pre's, the skills'): what it costs the host."""
        groups = [self._general, *([] if self._pre is None else [self._pre]), *self._skills]
        return [tensor for group in groups for tensor in group.values()]

    def scratch_bytes(self) -> int:
        """Bytes of the float32 scratch buffers apply() keeps on the model's device."""
        return sum(buffer.numel() for buffer in self._scratch._buffers.values())

    def _inputs(self, name: str) -> TensorInputs:
        device = self._params[name].device

        def source(tensors: Mapping[str, torch.Tensor], label: str, is_model: bool) -> Source:
            # A no-op for a model on the host.
            return Source(lambda: tensors[name].to(device), label, is_model)

        return TensorInputs(
            name,
            self._general[name].shape,
            general=source(self._general, self._labels["theta_general"], True),
            pre=None if self._pre is None else source(self._pre, self._labels["theta_pre"], True),
            skills=[
                source(tensors, label, not self._skills_are_tau)
                for tensors, label in zip(self._skills, self._labels["skills"], strict=True)
            ],
            skills_are_tau=self._skills_are_tau,
            options=self.options,
            scratch=self._scratch,
        )

    @torch.no_grad()
    def apply(self, omegas: Sequence[float] | float) -> None:
        """Set every parameter to the merge at weights `omegas` (one per skill input)."""
        (omega,) = weight_rows([omegas], len(self._skills))
        try:
            for name, param in self._params.items():
                out = self._scratch.get("out", param.shape, param.device)
                merged = self.method(self._inputs(name), omega, out)
                check_range(
                    merged, f"in-place merge at ω={list(omega)}: tensor {name!r}", param.dtype
                )
                param.copy_(merged)
        except BaseException:
            self.restore()
            raise

    @torch.no_grad()
    def restore(self) -> None:
        """Put θ_G back."""
        for name, param in self._params.items():
            param.copy_(self._general[name])


def _hold(tensor: torch.Tensor) -> torch.Tensor:
    """A host copy of `tensor` in memory of its own (never a view of a read buffer); meta stays
    meta."""
    if tensor.is_meta:
        return torch.empty_like(tensor)
    copy = torch.empty(tensor.shape, dtype=tensor.dtype)
    copy.copy_(tensor)
    return copy
