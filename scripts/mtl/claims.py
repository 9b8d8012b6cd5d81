"""The paper's claims (docs/tables.md, "The claims"), each decided by a stated rule on
the all_results frame.

Every number is a mean over seeds with a spread: the sample sd over seeds, or, for a number from
one seed (θ_G, trained once; or a one-seed run), its evaluation's standard error — the only
yardstick of noise such a number has. Spread always counts *against* the claim: "A is better
than B" needs the difference of means to exceed the sum of the two spreads; "A is close to B"
needs the gap plus the spreads to stay inside the stated tolerance. Tolerances are constants
below, fixed before any result was seen; nothing here knows an outcome.

The points compared are Table 3's: per skill, the best CFT and best RT (highest mean skill score
over sizes), PTM at its best grid ω, PTM at the ω chosen on the development sets (where the
frame has them) and PTM at ω = |D|/|G| (mtl.tables' `best` rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from mtl.suites import SKILLS
from mtl.tables import (
    PTM_METHOD,
    SUITE_COLUMN,
    baseline,
    best_of,
    development_table,
    held_out_of,
    pick,
    results_table,
)

# Claim 2: PTM's skill gain over θ_G is "close" to RT's when it reaches this share of it.
CLOSE_SHARE = 0.75
# Claim 2: "a fraction of RT's cost" — PTM's training steps at most this share of RT's.
COST_SHARE = 0.5
# Claim 3: PTM "keeps compliance" when ExRef drops at most this many points below θ_G's.
EXREF_TOLERANCE = 10.0
# Claim 4: the heuristic ω is "a good point" when its gain reaches this share of the best ω's.
HEURISTIC_SHARE = 0.5

STATEMENTS = {
    1: "PTM keeps general skills far better than CFT",
    2: "PTM reaches skill gains close to RT at a fraction of RT's cost",
    3: "for safety, CFT and RT over-refuse safe prompts while PTM keeps compliance",
    # Not |D|/|G|: the report shows claims.csv as reStructuredText (|D| is a substitution).
    4: "ω = size of D / size of G picks a good point without held-out data",
    5: "merging several skills interferes (science drops most in multi-skill merges)",
}
COLUMNS = ["claim", "part", "statement", "scope", "numbers", "rule", "margin", "verdict"]


@dataclass(frozen=True)
class Number:
    """A score: mean over seeds, its spread, and what the spread is."""

    label: str
    mean: float
    spread: float
    seeds: int

    def __str__(self) -> str:
        kind = f"sd over {self.seeds} seeds" if self.seeds >= 2 else "1 seed, eval stderr"
        return f"{self.label} {self.mean:.2f} ± {self.spread:.2f} ({kind})"


def number(label: str, point: pd.Series, column: str) -> Number:
    seeds = int(point["seeds"])
    spread = point[f"{column}_sd"] if seeds >= 2 else point.get(f"{column}_se", math.nan)
    return Number(label, float(point[column]), 0.0 if pd.isna(spread) else float(spread), seeds)


def _row(claim: int, part: str, scope: str, numbers: Sequence[Number | str], rule: str,
         margin: float, holds: bool) -> dict:
    return {"claim": claim, "part": part, "statement": STATEMENTS[claim], "scope": scope,
            "numbers": "; ".join(str(n) for n in numbers), "rule": rule,
            "margin": round(margin, 4), "verdict": "holds" if holds else "fails"}


def _better(a: Number, b: Number) -> float:
    """Margin of "a is clearly above b": difference of means minus the sum of spreads."""
    return a.mean - b.mean - (a.spread + b.spread)


def _points(agg: pd.DataFrame, dev: pd.DataFrame, skill: str,
            method: str) -> dict[str, pd.Series]:
    """Best CFT, RT and PTM grid point over sizes; the heuristic ω on the best PTM's data
    (never a best over sizes: that would tune the heuristic on the evaluation); where `dev` has
    the grid's development-set scores, the PTM point chosen there and the heuristic ω on its
    data."""
    column = SUITE_COLUMN[skill]
    grid = {"regime": "merge", "skills": skill, "method": method, "weighting": "grid"}
    ptm = best_of(agg, column, **grid)
    points = {
        "CFT": best_of(agg, column, regime="cft", skills=skill),
        "RT": best_of(agg, column, regime="rt", skills=skill),
        "PTM": ptm,
        "PTM heuristic": best_of(agg, column, regime="merge", skills=skill, method=method,
                                 weighting="heuristic", size=ptm["size"]),
    }
    held_out = held_out_of(agg, dev, column, **grid)
    if held_out is not None:
        points["PTM held-out"] = held_out
        points["PTM heuristic (held-out size)"] = best_of(
            agg, column, regime="merge", skills=skill, method=method, weighting="heuristic",
            size=held_out["size"])
    return points


def _gain_share(gain: Number, reference: Number, base: Number, share: float, claim: int,
                part: str, scope: str, rule: str, numbers: Sequence[Number]) -> dict:
    """A "reaches `share` of the reference's gain over θ_G" rule, the reference's gain clear."""
    reference_gain = reference.mean - base.mean
    clear = reference_gain - (reference.spread + base.spread)
    own = gain.mean - base.mean - gain.spread
    margin = own - share * reference_gain
    return _row(claim, part, scope, numbers, rule, margin, clear > 0 and margin >= 0)


def claims(frame: pd.DataFrame, skills: Sequence[str] = SKILLS,
           method: str = PTM_METHOD) -> pd.DataFrame:
    """One row per claim part and scope: the numbers deciding it, the rule, the margin (how far
    past its threshold the rule's quantity is; negative: short of it) and holds | fails. A claim
    holds when every one of its rows does."""
    agg = results_table(frame)
    base_point = baseline(agg)
    dev = development_table(frame)
    rows = []
    chosen = {skill: _points(agg, dev, skill, method) for skill in skills}
    for skill, points in chosen.items():
        column = SUITE_COLUMN[skill]
        ptm, cft = number("PTM best ω", points["PTM"], "General"), number(
            "CFT", points["CFT"], "General")
        rows.append(_row(1, "general retention", skill, [ptm, cft],
                         "holds if PTM's mean General minus CFT's exceeds the sum of their "
                         "spreads", _better(ptm, cft), _better(ptm, cft) > 0))
        base = number("θ_G", base_point, column)
        ptm_skill = number("PTM best ω", points["PTM"], column)
        rt_skill = number("RT", points["RT"], column)
        rows.append(_gain_share(
            ptm_skill, rt_skill, base, CLOSE_SHARE, 2, "skill gain", skill,
            f"holds if RT's gain over θ_G exceeds the sum of their spreads and PTM's gain minus "
            f"PTM's spread is at least {CLOSE_SHARE:g} × RT's gain",
            [ptm_skill, rt_skill, base]))
        ptm_steps, rt_steps = points["PTM"]["steps"], points["RT"]["steps"]
        known = not (pd.isna(ptm_steps) or pd.isna(rt_steps))
        margin = COST_SHARE * rt_steps - ptm_steps if known else math.nan
        rows.append(_row(2, "cost", skill,
                         [f"PTM steps {ptm_steps:g}", f"RT steps {rt_steps:g}"],
                         f"holds if PTM's training steps are at most {COST_SHARE:g} × RT's "
                         "(steps do not vary with the seed: no spread)",
                         margin, known and margin >= 0))
        heuristic = number("PTM heuristic ω", points["PTM heuristic"], column)
        rows.append(_gain_share(
            heuristic, ptm_skill, base, HEURISTIC_SHARE, 4, "heuristic ω", skill,
            f"holds if the best grid ω's gain over θ_G exceeds the sum of their spreads and the "
            f"heuristic ω's gain minus its spread is at least {HEURISTIC_SHARE:g} × the best "
            f"ω's gain", [heuristic, ptm_skill, base]))
        if "PTM held-out" in points:
            held_out = number("PTM held-out ω", points["PTM held-out"], column)
            heuristic = number("PTM heuristic ω", points["PTM heuristic (held-out size)"],
                               column)
            rows.append(_gain_share(
                heuristic, held_out, base, HEURISTIC_SHARE, 4, "against held-out ω", skill,
                f"holds if the held-out ω's gain over θ_G (ω chosen on the development set, "
                f"scored on the test set) exceeds the sum of their spreads and the heuristic "
                f"ω's gain minus its spread is at least {HEURISTIC_SHARE:g} × the held-out ω's "
                f"gain", [heuristic, held_out, base]))
    if "safety" in chosen:
        rows += _safety(base_point, chosen["safety"])
    rows += _interference(agg, skills, method)
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("claim", kind="mergesort",
                                                           ignore_index=True)


def _safety(base_point: pd.Series, points: Mapping[str, pd.Series]) -> list[dict]:
    """Claim 3 on the safety models of Table 3: ExRef, safe-prompt compliance."""
    base = number("θ_G", base_point, "ExRef")
    rows = []
    for label in ("CFT", "RT"):
        other = number(label, points[label], "ExRef")
        margin = _better(base, other)
        rows.append(_row(3, f"{label} over-refuses", "safety", [other, base],
                         f"holds if θ_G's mean ExRef minus {label}'s exceeds the sum of their "
                         "spreads", margin, margin > 0))
    ptm = number("PTM best ω", points["PTM"], "ExRef")
    margin = EXREF_TOLERANCE - (base.mean - ptm.mean + base.spread + ptm.spread)
    rows.append(_row(3, "PTM keeps compliance", "safety", [ptm, base],
                     f"holds if θ_G's mean ExRef minus PTM's, plus the sum of their spreads, is "
                     f"at most {EXREF_TOLERANCE:g} points", margin, margin >= 0))
    return rows


def _interference(agg: pd.DataFrame, skills: Sequence[str], method: str) -> list[dict]:
    """Claim 5: each skill's score in its own heuristic merge against the merge of all skills
    at the same ω — the same task vector, only the others added."""
    joined = "+".join(skills)
    everything = pick(agg, regime="merge", skills=joined, method=method, weighting="heuristic")
    if len(everything) != 1:
        raise ValueError(f"results frame: expected one heuristic {method!r} merge of {joined}, "
                         f"got {len(everything)}")
    # Each skill alone on the data the merge of all skills holds (its size column is "+"-joined
    # in the skills' order): the same task vector.
    sizes = dict(zip(skills, everything.iloc[0]["size"].split("+"), strict=True))
    drops: dict[str, tuple[float, float, list[Number]]] = {}
    for skill in skills:
        column = SUITE_COLUMN[skill]
        alone = best_of(agg, column, regime="merge", skills=skill, method=method,
                        weighting="heuristic", size=sizes[skill])
        single, merged = number(f"{skill} alone", alone, column), number(
            f"{skill} in {joined}", everything.iloc[0], column)
        drops[skill] = (single.mean - merged.mean, single.spread + merged.spread,
                        [single, merged])
    numbers = [n for _, _, pair in drops.values() for n in pair]
    margins = {skill: drop - spread for skill, (drop, spread, _) in drops.items()}
    worst = max(margins, key=margins.__getitem__)
    rows = [_row(5, "interference", "all skills", numbers,
                 "holds if, for some skill, its mean score in its own heuristic merge minus "
                 "its mean in the merge of all skills exceeds the sum of the two spreads "
                 f"(margin: the largest such difference, {worst})", margins[worst],
                 margins[worst] > 0)]
    if "science" in drops and len(drops) > 1:
        science, spread, _ = drops["science"]
        others = {s: science - d - (spread + sp) for s, (d, sp, _) in drops.items()
                  if s != "science"}
        closest = min(others, key=others.__getitem__)
        rows.append(_row(5, "science drops most", "all skills", numbers,
                         "holds if science's drop (alone minus in the merge of all) exceeds "
                         "every other skill's drop by more than the sum of the four spreads "
                         f"involved (margin: against {closest})", others[closest],
                         others[closest] > 0))
    return rows
