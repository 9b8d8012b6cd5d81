"""The merge methods' registry: each method is one decorated function in a module of this
package, and everything else about it derives from its declaration.

A method gets one tensor's `TensorInputs`, a weight vector ω (one weight per skill) and an
output buffer; it writes the merge into the buffer and touches no file. Its declaration says
which view of the skills it reads (τ_k or θ_k), whether it needs θ_pre, the options it reads
(declared once, with their type, default and range), what the skill models were finetuned
from, its label in tables, its mergekit equivalent, whether it is elementwise and, optionally,
a bound on its output's magnitude from its inputs' bounds (where the bound proves the output
fits the output dtype, the engine skips checking it). The config schema's method names and
option keys (mtl.merge.recipe.merge_schema), recipes, mergekit configs, model cards and the
tables' labels are read from here.

Adding a method is one new module in this package (found and imported below) and its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.options import MergeError, Option, declare

SkillsFrom = Literal["pre", "general", "general_match"]
SKILL_REGIMES: dict[str, str] = {"pre": "ptm", "general": "cft", "general_match": "cft-match"}

MethodFn = Callable[[TensorInputs, tuple[float, ...], torch.Tensor], torch.Tensor]
# An upper bound on |entry| of the method's output at ω, from x.bound() of the inputs it read.
BoundFn = Callable[[TensorInputs, tuple[float, ...]], float]


@dataclass(frozen=True)
class Mergekit:
    """How mergekit 0.1.5 re-makes a method's merge.

    name:           mergekit's merge_method.
    model_options:  options given as every model's parameters (mergekit's name: `renamed`).
    global_options: options given as the merge's parameters.
    fixed:          the merge's parameters with set values (options given override them).
    weighted:       mergekit weighs the models (`weight`); a method it does not weigh has a
                    config only where every ω is 1 (ours scales τ_k by ω_k first).
    note:           a comment in the config, where mergekit's output differs from ours.
    """

    name: str
    model_options: tuple[str, ...] = ()
    global_options: tuple[str, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)
    renamed: Mapping[str, str] = field(default_factory=dict)
    weighted: bool = True
    note: str | None = None


@dataclass(frozen=True)
class Method:
    """A merge method: calling it writes one tensor's merge at weights ω into `out`."""

    name: str
    fn: MethodFn
    formula: str
    tag: str  # the method's short name in the workflow's targets (merge-<tag>-…)
    label: str  # its name in tables and figures
    skills_as: Literal["tau", "theta"]  # which view of the skill inputs the method reads
    # The skill models' training: from θ_pre on D (PTM), from θ_G on D (CFT), or from θ_G on D
    # plus as many general examples (CFT-match).
    skills_from: SkillsFrom
    needs_theta_pre: bool  # beyond what converting between τ_k and θ_k needs
    options: tuple[str, ...]  # the method options (OPTIONS) it reads
    mergekit: Mergekit | None  # mergekit's equivalent, if it has one
    elementwise: bool  # each output entry depends on the same entry of the inputs only
    bound: BoundFn | None = None  # None: the engine checks every output for Inf and overflow
    n_skills: int | None = None  # how many skills it merges (None: any number)

    @property
    def skill_regime(self) -> str:
        """The workflow's regime that trains the skill models (results/models/<regime>-…)."""
        return SKILL_REGIMES[self.skills_from]

    def __call__(
        self, x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor
    ) -> torch.Tensor:
        return self.fn(x, omega, out)


METHODS: dict[str, Method] = {}


def register(
    name: str,
    *,
    formula: str,
    tag: str,
    label: str,
    skills_as: Literal["tau", "theta"],
    skills_from: SkillsFrom = "pre",
    needs_theta_pre: bool = False,
    options: tuple[Option, ...] = (),
    mergekit: Mergekit | None = None,
    elementwise: bool = False,
    bound: BoundFn | None = None,
    n_skills: int | None = None,
) -> Callable[[MethodFn], MethodFn]:
    """Add a method to METHODS under `name` (a paper name)."""

    def add(fn: MethodFn) -> MethodFn:
        if name in METHODS:
            raise ValueError(f"merge method {name!r} is already registered")
        if not tag.isalnum() or tag in {m.tag for m in METHODS.values()}:
            raise ValueError(f"merge method {name!r}: tag {tag!r} must be new and alphanumeric")
        names = tuple(declare(option).name for option in options)
        if mergekit is not None:
            unread = set(mergekit.model_options + mergekit.global_options) - set(names)
            if unread:
                raise ValueError(f"merge method {name!r}: mergekit maps unread options {unread}")
        METHODS[name] = Method(
            name,
            fn,
            formula,
            tag,
            label,
            skills_as,
            skills_from,
            needs_theta_pre,
            names,
            mergekit,
            elementwise,
            bound,
            n_skills,
        )
        return fn

    return add


def check_skills(method: Method, n_skills: int) -> None:
    """Raise unless `method` merges `n_skills` skills."""
    if method.n_skills is not None and n_skills != method.n_skills:
        raise MergeError(
            f"merge method {method.name!r} merges {method.n_skills} skill(s), not {n_skills}"
        )


def method_named(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise MergeError(f"unknown merge method {name!r}; known: {sorted(METHODS)}") from None


# The paper's methods first, in the paper's order (the registry's order is the config
# documentation's and the schema's); any other module of the package after them, by name.
_FIRST = ("arithmetic", "ties_dare")
for _module in (
    *_FIRST,
    *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _FIRST),
):
    importlib.import_module(f"{__name__}.{_module}")
