"""GPU time of one paper-scale evaluation point, from counted items and assumed throughputs.

Each benchmark's scored items and its tasks' samples and token limits come from the registry
(mtl.benchmarks, the task files); what a GPU does per second is an input, one number per
generation backend, so a measured backend is one more column. The estimate is the worst case:
every generation runs to its token limit (a random-weight model does; a trained one stops
earlier). docs/paper-evaluation.md holds the table this renders, and a test keeps them equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mtl.benchmarks import BENCHMARKS, generation, selected, task_file

# Evaluation points per report item at paper scale (one seed): table 5 is θ_G and the seven
# heuristic-ω merges; table 3 adds 3 CFT, 3 RT and an 11-point ω grid per skill.
POINTS = {"table 5": 8, "table 3": 1 + 3 + 3 + 3 + 3 * 11}


@dataclass(frozen=True)
class Backend:
    """A generation backend and its sustained generated tokens per second on one GPU."""

    name: str
    tokens_per_s: float
    measured: bool = False

    @classmethod
    def parse(cls, text: str) -> Backend:
        """`name=tokens_per_s`, `*` after the number marking a measurement."""
        name, _, rate = text.rpartition("=")
        measured = rate.endswith("*")
        try:
            value = float(rate.rstrip("*"))
        except ValueError:
            value = -1.0
        if not name or value <= 0:
            raise ValueError(f"backend {text!r}: expected name=tokens_per_s (a positive number)")
        return cls(name, value, measured)


@dataclass(frozen=True)
class Load:
    """What one evaluation point asks of a task."""

    task: str
    scored: int
    samples: int
    max_new_tokens: int | None  # None: a likelihood task (no generation)
    choices: int = 0

    @property
    def generations(self) -> int:
        return self.scored * self.samples if self.max_new_tokens else 0

    @property
    def tokens(self) -> int:
        return self.generations * (self.max_new_tokens or 0)


def loads(names: Iterable[str]) -> list[Load]:
    out = []
    for benchmark in selected(names):
        for task in benchmark.tasks:
            settings = generation(task.name)
            if settings is None:
                choices = len(task_file(task.name).get("doc_to_choice") or [])
                out.append(Load(task.name, task.scored, 1, None, choices))
            else:
                out.append(Load(task.name, task.scored, settings["samples"],
                                int(settings["max_gen_toks"])))
    return out


def render(backends: Sequence[Backend], names: Iterable[str] | None = None,
           fixed_h: float = 0.0) -> str:
    """The cost table in Markdown: per task its counted load and its hours on each backend,
    then one point (plus `fixed_h`: likelihood tasks, judges and code execution, which no
    generation backend changes) and each report item's points."""
    rows = loads(list(BENCHMARKS) if names is None else names)
    label = [f"{b.name} ({b.tokens_per_s:,.0f} tok/s, {'measured' if b.measured else 'assumed'})"
             for b in backends]
    lines = ["| task | items | samples | token limit | generated tokens (M) | "
             + " | ".join(f"{name}: h" for name in label) + " |",
             "|---|---|---|---|---|" + "---|" * len(backends)]
    for row in rows:
        if row.max_new_tokens is None:
            lines.append(f"| `{row.task}` | {row.scored:,} | — | — | — (log-likelihood of "
                         f"{row.choices} choices) | " + " | ".join("—" for _ in backends) + " |")
            continue
        hours = [row.tokens / b.tokens_per_s / 3600 for b in backends]
        lines.append(f"| `{row.task}` | {row.scored:,} | {row.samples} | {row.max_new_tokens:,} "
                     f"| {row.tokens / 1e6:.2f} | " + " | ".join(f"{h:.2f}" for h in hours)
                     + " |")
    total = sum(row.tokens for row in rows)
    point = [total / b.tokens_per_s / 3600 + fixed_h for b in backends]
    lines.append(f"| **one point** (+ {fixed_h:.2f} h fixed) | "
                 f"{sum(r.generations for r in rows):,} generations | | | "
                 f"**{total / 1e6:.2f}** | " + " | ".join(f"**{h:.2f}**" for h in point) + " |")
    for item, count in POINTS.items():
        lines.append(f"| {item}: {count} points | | | | | "
                     + " | ".join(f"{h * count:.0f}" for h in point) + " |")
    return "\n".join(lines) + "\n"
