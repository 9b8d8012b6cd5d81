"""Merge options and the one error type of the engine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal


class MergeError(ValueError):
    """A merge input or output is unusable; the message names the file and/or tensor."""


# --------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class EngineOptions:
    """Options of one merge; `options={}` means all defaults.

    density:       ties/dare/dare_ties: fraction of each task vector kept (DARE: p = 1 − density).
    normalize:     ties/dare_ties: divide by the summed weights of the entries that survive the
                   sign election (mergekit's `normalize`). Off by default, as the paper's
                   task-arithmetic recipe (normalize: false), so θ_G keeps weight 1.
    seed:          dare/dare_ties: seed of the drop masks.
    resize_vocab:  None refuses inputs whose vocabulary differs from θ_G's (Llama-2 has 32000
                   rows, Tülu 32001). "pad" gives a smaller input θ_G's missing rows: a model
                   (θ_pre, θ_D) gets θ_G's own rows, a task vector zeros; either way the extra
                   tokens keep θ_G's embedding. Inputs larger than θ_G are always refused, since
                   the output keeps θ_G's tokenizer.
    vocab_tensors: name suffixes of the tensors whose first dimension is the vocabulary.
    shard_size:    bytes of tensor data per output shard (Hugging Face's default, 5 GB).
    progress:      show a progress bar on stderr.
    direct_io:     write outputs past the page cache (O_DIRECT, mtl.merge.direct) where the
                   filesystem allows it; it changes no byte. Default: on, unless the
                   environment sets MTL_DIRECT_IO=0 (say, for a filesystem where it is slow).
    """

    density: float = 0.5
    normalize: bool = False
    seed: int = 0
    resize_vocab: Literal["pad"] | None = None
    # Llama/Mistral/Qwen, GPT-NeoX (file names), GPT-2, BLOOM.
    vocab_tensors: tuple[str, ...] = (
        "embed_tokens.weight",
        "lm_head.weight",
        "embed_in.weight",
        "embed_out.weight",
        "wte.weight",
        "word_embeddings.weight",
    )
    shard_size: int = 5_000_000_000
    progress: bool = True
    direct_io: bool = field(default_factory=lambda: os.environ.get("MTL_DIRECT_IO") != "0")

    def __post_init__(self) -> None:
        if not 0 < self.density <= 1:
            raise MergeError(f"option density={self.density!r} must be in (0, 1]")
        if self.resize_vocab not in (None, "pad"):
            raise MergeError(f"option resize_vocab={self.resize_vocab!r} must be None or 'pad'")
        if self.shard_size <= 0:
            raise MergeError(f"option shard_size={self.shard_size!r} must be positive")

    @classmethod
    def of(cls, options: Mapping[str, Any] | EngineOptions) -> EngineOptions:
        if isinstance(options, EngineOptions):
            return options
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise MergeError(f"unknown merge option(s) {unknown}; known: {sorted(known)}")
        values = dict(options)
        if "vocab_tensors" in values:
            values["vocab_tensors"] = tuple(values["vocab_tensors"])
        return cls(**values)
