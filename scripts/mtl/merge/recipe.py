"""One merge recipe, from the workflow's config to the engine.

The workflow's rules build a `Recipe` from the config's `merge` section once, at parse time (so
a bad recipe is named before any job runs), and pass it to the step programs as plain data;
the step programs turn it back into a `Recipe` and let it drive the engine, in memory or on
disk. What a merge evaluation evaluates (one point at the heuristic ω, or the ω grid) is the
recipe's `points`; the heuristic ω counted in the data trained is `heuristic_omegas`
(mtl.omega uses the paper's sizes instead under `merge.omega_sizes: paper`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mtl.io import read_jsonl
from mtl.merge.methods import METHODS, Method, check_skills, method_named
from mtl.merge.options import OPTIONS, EngineOptions, MergeError

if TYPE_CHECKING:
    import torch

    from mtl.merge.inplace import InPlaceMerger

Weighting = Literal["heuristic", "grid"]
# config.yaml's `merge.resize_vocab` values, as the engine's option.
_RESIZE = {"refuse": None, "pad": "pad"}
# Method options the workflow sets itself rather than the config.
_FROM_WORKFLOW = {"seed"}


def heuristic_omega(n_skill: int, n_general: int) -> float:
    """The paper's default skill weight |D|/|G|: skill examples over general-mix examples."""
    if n_general <= 0 or n_skill < 0:
        raise MergeError(
            f"heuristic_omega needs n_skill >= 0 and n_general > 0, got {n_skill} and {n_general}"
        )
    return n_skill / n_general


def heuristic_omegas(skill_data: Sequence[str | Path], general_data: str | Path) -> list[float]:
    """ω_k = |D_k|/|G| per skill, counted from the subsets actually trained on (JSONL rows)."""
    n_general = len(read_jsonl(general_data))
    return [heuristic_omega(len(read_jsonl(path)), n_general) for path in skill_data]


_OMEGA_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# The methods Table 6 and Figure 3 may compare (`merge.compare`): those that merge task vectors
# of models finetuned from θ_pre, the paper's PTM setting.
COMPARABLE: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.skills_from == "pre")


def compared_methods(merge: Mapping[str, Any]) -> tuple[str, ...]:
    """The methods of config section `merge`'s `compare`: every comparable one for "all"."""
    compare = merge.get("compare", "all")
    return COMPARABLE if compare == "all" else tuple(compare)


def merge_schema() -> dict[str, Any]:
    """The JSON schema of the config's `merge` section, from the method registry: the method
    names, and one key per method option with its type, default and range."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "method": {"enum": list(METHODS), "default": "task_arithmetic"},
            "omega_grid": {
                "type": "array",
                "items": {"type": "number", "minimum": 0},
                "minItems": 1,
                "default": list(_OMEGA_GRID),
            },
            **{
                name: option.schema()
                for name, option in OPTIONS.items()
                if name not in _FROM_WORKFLOW
            },
            "resize_vocab": {"enum": list(_RESIZE), "default": "refuse"},
            # How the heuristic ω counts |D| and |G| (mtl.omega); no method option.
            "omega_sizes": {"enum": ["data", "paper"], "default": "data"},
            # What Table 6 and Figure 3 compare; no method option either.
            "compare": {
                "oneOf": [
                    {"const": "all"},
                    {"type": "array", "items": {"enum": list(COMPARABLE)}, "minItems": 1,
                     "uniqueItems": True},
                ],
                "default": "all",
            },
        },
    }


@dataclass(frozen=True)
class Recipe:
    """A merge of θ_G with K skills: the method, its options, and which weights to apply.

    method:       a key of METHODS.
    skills:       the skills' names, in the order of their inputs and of ω's entries.
    weighting:    "heuristic": one point, ω_k = |D_k|/|G|; "grid": every ω of `omega_grid`,
                  the same for each skill.
    method_options: the method's options (OPTIONS) by name; those not given take their
                  defaults.
    seed:         the workflow's seed (the random methods' `seed` option).
    resize_vocab: EngineOptions.resize_vocab.
    """

    method: str
    skills: tuple[str, ...] = ()
    weighting: Weighting = "heuristic"
    omega_grid: tuple[float, ...] = _OMEGA_GRID
    method_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    resize_vocab: Literal["pad"] | None = None

    def __post_init__(self) -> None:
        spec = method_named(self.method)
        if self.weighting not in ("heuristic", "grid"):
            raise MergeError(f"weighting {self.weighting!r} must be 'heuristic' or 'grid'")
        if not self.omega_grid or not all(math.isfinite(w) for w in self.omega_grid):
            raise MergeError(f"omega_grid {list(self.omega_grid)!r} must be finite numbers")
        if self.skills:
            check_skills(spec, len(self.skills))
        unused = sorted(set(self.method_options) - set(spec.options))
        if unused:
            raise MergeError(f"method {self.method!r} has no option(s) {unused}")
        # Every option the method reads, checked and typed (so equal recipes compare equal).
        options = self.options()
        values = {n: getattr(options, n) for n in spec.options if n not in _FROM_WORKFLOW}
        object.__setattr__(self, "method_options", values)

    @classmethod
    def from_config(
        cls,
        merge: Mapping[str, Any],
        *,
        seed: int,
        method: str | None = None,
        skills: Sequence[str] = (),
        weighting: Weighting = "heuristic",
    ) -> Recipe:
        """The recipe of config section `merge` (method: that key unless given)."""
        resize = merge.get("resize_vocab", "refuse")
        if resize not in _RESIZE:
            raise MergeError(f"config merge.resize_vocab={resize!r} must be one of {list(_RESIZE)}")
        try:
            # Every option the config sets is checked, whichever method reads it.
            for name in OPTIONS.keys() & merge.keys():
                OPTIONS[name].check(merge[name])
            spec = method_named(method or merge.get("method", "task_arithmetic"))
            return cls(
                method=spec.name,
                skills=tuple(skills),
                weighting=weighting,
                omega_grid=tuple(float(w) for w in merge.get("omega_grid", cls.omega_grid)),
                method_options={
                    name: merge[name]
                    for name in spec.options
                    if name in merge and name not in _FROM_WORKFLOW
                },
                seed=seed,
                resize_vocab=_RESIZE[resize],
            )
        except MergeError as err:
            raise MergeError(f"config merge: {err}") from None

    def to_params(self) -> dict[str, Any]:
        """Plain data (a rule's params, a provenance record, summary.json)."""
        params = {
            key: list(v) if isinstance(v, tuple) else v
            for key, v in asdict(self).items()
            if key != "method_options"
        }
        params.update(self.method_options)
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Recipe:
        own = {key: v for key, v in params.items() if key in OPTIONS and key not in _FROM_WORKFLOW}
        values = {key: v for key, v in params.items() if key not in own}
        for key in ("skills", "omega_grid"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values, method_options=own)

    @property
    def spec(self) -> Method:
        return method_named(self.method)

    @property
    def skill_inputs(self) -> Literal["task_vectors", "finetuned"]:
        """How the skills are given: task vectors τ_k, or finetuned models θ_k."""
        return "task_vectors" if self.spec.skills_as == "tau" else "finetuned"

    @property
    def needs_theta_pre(self) -> bool:
        """With the skills given as `skill_inputs`, whether θ_pre is an input."""
        return self.spec.needs_theta_pre

    def options(self, progress: bool = False) -> EngineOptions:
        method = dict(self.method_options)
        if "seed" in self.spec.options:
            method["seed"] = self.seed
        return EngineOptions(method=method, resize_vocab=self.resize_vocab, progress=progress)

    def points(self, heuristic: Sequence[float]) -> list[tuple[str, tuple[float, ...]]]:
        """(name, ω) of every point to evaluate: "" at the heuristic ω, "omega-0.30" on the grid."""
        if self.weighting == "heuristic":
            if len(heuristic) != len(self.skills):
                raise MergeError(f"{len(heuristic)} heuristic ω for skills {list(self.skills)}")
            return [("", tuple(heuristic))]
        return [(f"omega-{w:.2f}", (w,) * len(self.skills)) for w in self.omega_grid]

    def _check_theta_pre(self, theta_pre: Path | None) -> None:
        if self.needs_theta_pre and theta_pre is None:
            raise MergeError(f"merge method {self.method!r} needs theta_pre, and none was given")

    def in_place(
        self, model: torch.nn.Module, skills: Sequence[str | Path], theta_pre: str | Path | None
    ) -> InPlaceMerger:
        """An in-place merger of `model` (holding θ_G) with the skill inputs."""
        from mtl.merge.inplace import InPlaceMerger

        pre = None if theta_pre is None else Path(theta_pre)
        self._check_theta_pre(pre)
        return InPlaceMerger(
            model,
            method=self.method,
            theta_pre=pre,
            options=self.options(),
            **{self.skill_inputs: [Path(p) for p in skills]},
        )

    def to_disk(
        self,
        theta_general: str | Path,
        settings: Sequence[Sequence[float]],
        out_dirs: Sequence[str | Path],
        skills: Sequence[str | Path],
        theta_pre: str | Path | None,
        progress: bool = False,
    ) -> list[dict[str, Any]]:
        """merge_to_disk of this recipe: one output folder per weight setting."""
        from mtl.merge.engine import merge_to_disk

        pre = None if theta_pre is None else Path(theta_pre)
        self._check_theta_pre(pre)
        return merge_to_disk(
            self.method,
            Path(theta_general),
            settings,
            [Path(d) for d in out_dirs],
            theta_pre=pre,
            options=self.options(progress),
            **{self.skill_inputs: [Path(p) for p in skills]},
        )
