"""Synthetic all_results frames for the tables', figures' and claims' tests.

COLUMNS is the all_results schema as docs/tables.md spells it, written here once, independently of
the code under test (at merge it is checked against mtl.results.COLUMNS).
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ["model", "seed", "regime", "method", "weighting", "skills", "size", "omega", "steps",
           "suite", "metric", "value", "stderr", "n"]
# The headline rows' metric (mtl.results.HEADLINE) and, beside them, each suite's task metric
# as lm-eval names it, which the tables must ignore.
HEADLINE = "score"
TASK_METRIC = {"general": "exact_match", "science": "exact_match", "safety": "refusal",
               "coding": "pass", "exref": "compliance"}
BASE_SEED = 1234
SEEDS = (1234, 2, 3)


def point(model: str, regime: str, seed: int, scores: dict[str, float], *, method: str = "",
          weighting: str = "", skills: str = "", size: str = "", omega: str = "",
          steps: float | None = None, stderr: float = 1.0) -> list[dict]:
    """One evaluated point's rows: per suite, its headline score and a task-metric row with a
    different value that every table must ignore."""
    rows = []
    for suite, value in scores.items():
        common = {"model": model, "seed": seed, "regime": regime, "method": method,
                  "weighting": weighting, "skills": skills, "size": size, "omega": omega,
                  "steps": steps, "suite": suite, "n": 100}
        rows.append({**common, "metric": HEADLINE, "value": value, "stderr": stderr})
        rows.append({**common, "metric": TASK_METRIC[suite], "value": -999.0, "stderr": None})
    return rows


def frame(*points: list[dict]) -> pd.DataFrame:
    """The rows typed as mtl.results.collect types them (nullable integers for seed and steps)."""
    table = pd.DataFrame([row for rows in points for row in rows], columns=COLUMNS)
    for column in ("seed", "steps", "n"):
        table[column] = pd.array([None if pd.isna(v) else int(v) for v in table[column]],
                                 dtype="Int64")
    return table


def merge_id(method: str, weighting: str, skills: str, size: str) -> str:
    skillset = "+".join(f"{s}-{z}" for s, z in zip(skills.split("+"), size.split("+"),
                                                   strict=True))
    return f"merge-{method}-{weighting}-{skillset}"


def merge(method: str, weighting: str, skills: str, size: str, omega: str, seed: int,
          scores: dict[str, float], steps: float = 50, **kw) -> list[dict]:
    return point(merge_id(method, weighting, skills, size), "merge", seed, scores,
                 method=method, weighting=weighting, skills=skills, size=size, omega=omega,
                 steps=steps, **kw)


def trained(regime: str, skills: str, size: str, seed: int, scores: dict[str, float],
            steps: float, **kw) -> list[dict]:
    skillset = "+".join(f"{s}-{z}" for s, z in zip(skills.split("+"), size.split("+"),
                                                   strict=True))
    return point(f"{regime}-{skillset}", regime, seed, scores, skills=skills, size=size,
                 steps=steps, **kw)


def general(scores: dict[str, float], steps: float = 300, **kw) -> list[dict]:
    return point("general", "general", BASE_SEED, scores, steps=steps, **kw)
