"""Merge options and the one error type of the engine.

Two kinds of options: the engine's own (`EngineOptions` fields: vocabulary handling, sharding,
progress, I/O) and the methods' (`Option`, declared by the methods that read them and kept in
`OPTIONS`). A method option has one name, type, default and range wherever it is used: the
config's `merge` section, a recipe, the model card and the mergekit config all take it from its
declaration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal


class MergeError(ValueError):
    """A merge input or output is unusable; the message names the file and/or tensor."""


@dataclass(frozen=True)
class Option:
    """A method option: `kind` is bool, int or float; a number may be bounded by
    [low, high] (`low_open`: low itself excluded)."""

    name: str
    kind: type
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def check(self, value: Any) -> Any:
        """`value` as this option's type, or a MergeError naming the option."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise MergeError(f"option {self.name}={value!r} must be true or false")
            return value
        try:
            typed = self.kind(value)
        except (TypeError, ValueError):
            raise MergeError(f"option {self.name}={value!r} must be a number") from None
        too_low = self.low is not None and (
            typed <= self.low if self.low_open else typed < self.low
        )
        if too_low or (self.high is not None and typed > self.high):
            raise MergeError(f"option {self.name}={typed!r} must be in {self.interval}")
        return typed

    @property
    def interval(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}]"

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the option's config key."""
        kind = {bool: "boolean", int: "integer", float: "number"}[self.kind]
        schema: dict[str, Any] = {"type": kind, "default": self.default}
        if self.low is not None:
            schema["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            schema["maximum"] = self.high
        schema["description"] = self.doc
        return schema


OPTIONS: dict[str, Option] = {}


def declare(option: Option) -> Option:
    """Add a method option to OPTIONS; methods that share an option share its declaration."""
    known = OPTIONS.setdefault(option.name, option)
    if known != option:
        raise ValueError(f"merge option {option.name!r} is declared twice, differently")
    return option


@dataclass(frozen=True)
class EngineOptions:
    """Options of one merge; `options={}` means all defaults.

    method:        the method options (OPTIONS) given; the others take their defaults. Each is
                   also an attribute: `options.density`.
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

    method: Mapping[str, Any] = field(default_factory=dict)
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
        unknown = sorted(set(self.method) - set(OPTIONS))
        if unknown:
            raise MergeError(f"unknown merge option(s) {unknown}; known: {sorted(OPTIONS)}")
        checked = {name: OPTIONS[name].check(value) for name, value in self.method.items()}
        object.__setattr__(self, "method", checked)
        if self.resize_vocab not in (None, "pad"):
            raise MergeError(f"option resize_vocab={self.resize_vocab!r} must be None or 'pad'")
        if self.shard_size <= 0:
            raise MergeError(f"option shard_size={self.shard_size!r} must be positive")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: the method options.
        option = OPTIONS.get(name)
        if option is None:
            raise AttributeError(name)
        return self.method.get(name, option.default)

    @classmethod
    def of(cls, options: Mapping[str, Any] | EngineOptions) -> EngineOptions:
        """Options from a flat mapping of engine fields and method options."""
        if isinstance(options, EngineOptions):
            return options
        engine = {f.name for f in fields(cls)} - {"method"}
        unknown = sorted(set(options) - engine - set(OPTIONS))
        if unknown:
            known = sorted(engine | set(OPTIONS))
            raise MergeError(f"unknown merge option(s) {unknown}; known: {known}")
        values = {key: value for key, value in options.items() if key in engine}
        if "vocab_tensors" in values:
            values["vocab_tensors"] = tuple(values["vocab_tensors"])
        method = {key: value for key, value in options.items() if key in OPTIONS}
        return cls(method=method, **values)
