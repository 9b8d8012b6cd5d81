"""The paper's tables, each a function of the all_results frame (mtl.results' long schema).

One row of that frame is one (evaluated model or merge point, seed, suite, metric). Every
function here first keeps each suite's headline metric, turns the frame wide (one row per model
point and seed, one column per suite), then averages over seeds: for each score column X the
table has X (mean over seeds), X_sd (sample standard deviation over seeds, ddof 1; empty with
one seed) and one `seeds` column (how many seeds the row averages). θ_G is trained once (the base
seed), so its rows always average one seed.

"Best" rows are chosen as the paper chose them: the highest skill score. Here that is the highest
*mean over seeds* (never a per-seed best, which would favour noise), on the evaluation sets
themselves, so a best row is an upper bound on what tuning gives, not a held-out estimate. A
"held-out" row is chosen the same way on the development sets (metrics "dev/…",
mtl.results.development) and reports that point's test scores. Ties (equal means to 1e-6) go to
the cheaper row: fewer training steps, then the smaller ω, then the smaller size name, then the
model id, so the choice never depends on row order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mtl.io import write_csv
from mtl.merge import METHODS
from mtl.results import development
from mtl.suites import SKILLS, SUITES

if TYPE_CHECKING:
    from mtl.provenance import Step

# The paper's column name of each suite.
SUITE_COLUMN = {name: suite.column for name, suite in SUITES.items()}
# The metric of each suite's headline rows (mtl.results.HEADLINE): the suite's score as the paper
# reports it, at toy and paper scale alike; the per-task metric rows beside it are not tabled.
HEADLINE = "score"
# What identifies one evaluated point; everything but the seed.
POINT = ["model", "regime", "method", "weighting", "skills", "size", "omega"]
# The columns of the all_results schema this module reads (docs/tables.md; mtl.results.COLUMNS).
NEEDED = [*POINT, "seed", "steps", "suite", "metric", "value", "stderr"]
# The method tag of the paper's PTM (task arithmetic), and the labels of the engine's tags.
PTM_METHOD = "ta"
METHOD_LABEL = {method.tag: method.label for method in METHODS.values()}
BASELINE = "θ_G (baseline)"
TIE_TOLERANCE_DIGITS = 6
BEST_RULE = ("highest {column} (mean over seeds){over}; ties (equal to 1e-6) go to fewer steps, "
             "then smaller ω, then smaller size")


# ---- the frame --------------------------------------------------------------------------------


def _text(value: object) -> str:
    """A key cell as text: empty for missing; a float read from CSV ("0.3" -> 0.3) back as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _checked(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise ValueError(f"results frame: missing columns {missing}")
    frame = frame.copy()
    for column in POINT:
        frame[column] = frame[column].map(_text)
    # Float, not a nullable integer: unknown steps are NaN, and ties sort them last as inf.
    for column in ("value", "stderr", "steps"):
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    frame["seed"] = frame["seed"].astype(int)
    return frame


def per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (point, seed): each suite's headline score as a column named after the suite
    (General, Science, …) and its evaluation stderr as <column>_se; `steps` as trained."""
    frame = _checked(frame)
    unknown = sorted(set(frame["suite"]) - set(SUITE_COLUMN))
    if unknown:
        raise ValueError(f"results frame: unknown suites {unknown} (known: {list(SUITE_COLUMN)})")
    kept = frame[frame["metric"] == HEADLINE]
    if kept.empty:
        raise ValueError(f"results frame: no row of the headline metric {HEADLINE!r}")
    twice = kept[kept.duplicated([*POINT, "seed", "suite"], keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        raise ValueError(f"results frame: {len(twice)} rows repeat a (point, seed, suite), e.g. "
                         f"model {first['model']!r} ω {first['omega']!r} seed {first['seed']} "
                         f"suite {first['suite']!r}")
    keys = [*POINT, "seed"]
    wide = kept.pivot(index=keys, columns="suite", values=["value", "stderr"])
    out = pd.DataFrame(index=wide.index)
    for suite in [s for s in SUITES if s in set(kept["suite"])]:
        out[SUITE_COLUMN[suite]] = wide[("value", suite)]
        out[f"{SUITE_COLUMN[suite]}_se"] = wide[("stderr", suite)]
    out["steps"] = kept.groupby(keys)["steps"].max()
    return out.reset_index()


def _score_columns(wide: pd.DataFrame) -> list[str]:
    derived = [c for c in wide.columns if c.endswith("_change_pct")]
    return [c for c in (*SUITE_COLUMN.values(), *derived) if c in wide.columns]


def aggregate(wide: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean over seeds per point: X, X_sd (sample sd, NaN with one seed), X_se (mean evaluation
    stderr, the yardstick of a one-seed number), `seeds`, and `steps` (mean over seeds)."""
    columns = list(columns) if columns is not None else _score_columns(wide)
    groups = wide.groupby(POINT, sort=False, dropna=False)
    out = groups[columns].mean()
    for column in columns:
        out[f"{column}_sd"] = groups[column].std(ddof=1)
        if f"{column}_se" in wide.columns:
            out[f"{column}_se"] = groups[f"{column}_se"].mean()
    out["seeds"] = groups["seed"].nunique()
    out["steps"] = groups["steps"].mean()
    return out.reset_index()


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame averaged over seeds: one row per evaluated point."""
    return aggregate(per_seed(frame))


# ---- selections -------------------------------------------------------------------------------


def omega_value(row: Mapping, skill: str | None = None) -> float:
    """The ω a point gave `skill` (the only skill if None); NaN for a trained model."""
    if not row["omega"]:
        return math.nan
    weights = [float(w) for w in row["omega"].split("+")]
    if skill is None:
        if len(weights) != 1:
            raise ValueError(f"{row['model']}: ω {row['omega']!r} has several skills")
        return weights[0]
    return dict(zip(row["skills"].split("+"), weights, strict=True)).get(skill, math.nan)


def pick(agg: pd.DataFrame, *, regime: str, skills: str, method: str = "",
         weighting: str | None = None, size: str | None = None) -> pd.DataFrame:
    """The points of one kind: regime, skills ("+"-joined), for merges method and weighting,
    and (when given) the data size ("+"-joined, as the skills)."""
    mask = (agg["regime"] == regime) & (agg["skills"] == skills) & (agg["method"] == method)
    if weighting is not None:
        mask &= agg["weighting"] == weighting
    if size is not None:
        mask &= agg["size"] == size
    return agg[mask]


def best(candidates: pd.DataFrame, column: str) -> pd.Series:
    """The row with the highest mean `column`; ties as the module docstring says."""
    if candidates.empty:
        raise ValueError(f"no candidate rows to choose the best {column} from")
    order = candidates.assign(
        _score=-candidates[column].round(TIE_TOLERANCE_DIGITS),
        _steps=candidates["steps"].fillna(math.inf),
        _omega=[sum(float(w) for w in o.split("+")) if o else 0.0 for o in candidates["omega"]],
    ).sort_values(["_score", "_steps", "_omega", "size", "model"], kind="mergesort")
    return candidates.loc[order.index[0]]


def best_of(agg: pd.DataFrame, column: str, **kind: str) -> pd.Series:
    """`best` among the points of one kind (`pick`'s arguments); none is an error naming it."""
    candidates = pick(agg, **kind)
    if candidates.empty:
        described = ", ".join(f"{key} {value!r}" for key, value in kind.items())
        raise ValueError(f"results frame: no point with {described} to choose the best "
                         f"{column} from")
    return best(candidates, column)


def development_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The development sets' points averaged over seeds, as results_table averages the test
    sets'; empty when the frame has none."""
    rows = development(frame)
    return results_table(rows) if not rows.empty else pd.DataFrame(columns=POINT)


def held_out_of(points: pd.DataFrame, dev: pd.DataFrame, column: str,
                **kind: str) -> pd.Series | None:
    """The point of `points` (test scores) at the size and ω whose mean `column` on the
    development sets (`dev`, development_table's) is highest among the points of one kind;
    None when the development sets hold no point of that kind."""
    if pick(dev, **kind).empty:
        return None
    chosen = best_of(dev, column, **kind)
    found = pick(points, **kind)
    found = found[(found["size"] == chosen["size"]) & (found["omega"] == chosen["omega"])]
    return _only(found, f"test point of {chosen['model']} at ω {chosen['omega']}")


def baseline(agg: pd.DataFrame) -> pd.Series:
    rows = agg[agg["regime"] == "general"]
    if len(rows) != 1:
        raise ValueError(f"results frame: expected one θ_G point (regime 'general'), "
                         f"got {len(rows)}")
    return rows.iloc[0]


def _only(rows: pd.DataFrame, what: str) -> pd.Series:
    if len(rows) != 1:
        names = sorted(set(rows["model"]))
        raise ValueError(f"results frame: expected one {what}, got {len(rows)} ({names})")
    return rows.iloc[0]


def _table_row(label: str, point: pd.Series, columns: Sequence[str], note: str = "",
               **extra: object) -> dict:
    row: dict[str, object] = {"model": label, **extra, "source": point["model"],
                              "size": point["size"], "omega": point["omega"]}
    for column in columns:
        row[column] = round(point[column], 2) if column in point else math.nan
        row[f"{column}_sd"] = round(point[f"{column}_sd"], 2) if column in point else math.nan
    row["steps"] = point["steps"]
    row["seeds"] = int(point["seeds"])
    row["note"] = note
    return row


def _frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["steps"] = table["steps"].astype("Int64")
    return table


# ---- the tables -------------------------------------------------------------------------------


def table2(frame: pd.DataFrame, skill: str = "science", method: str = PTM_METHOD) -> pd.DataFrame:
    """Table 2: one skill across data sizes. θ_G, then the best CFT and best RT over sizes and
    the best PTM over sizes and the ω grid, each with its size, ω and training steps."""
    agg = results_table(frame)
    column = SUITE_COLUMN[skill]
    columns = ["General", column]
    rows = [_table_row(BASELINE, baseline(agg), columns)]
    for label, regime, extra in (("CFT", "cft", {}), ("RT", "rt", {}),
                                 ("PTM", "merge", {"method": method, "weighting": "grid"})):
        over = " over sizes" + (" and the ω grid" if regime == "merge" else "")
        note = BEST_RULE.format(column=column, over=over)
        point = best_of(agg, column, regime=regime, skills=skill, **extra)
        rows.append(_table_row(f"best {label}", point, columns, note))
    return _frame(rows)


def _change(values: pd.Series, base: float) -> pd.Series:
    """Percent change against θ_G, as the paper's Table 3 reports it; none from a zero base."""
    return 100 * (values - base) / base if base else pd.Series(math.nan, index=values.index)


def table3(frame: pd.DataFrame, skills: Iterable[str] = SKILLS,
           method: str = PTM_METHOD) -> pd.DataFrame:
    """Table 3: per skill, θ_G, best CFT, best RT, PTM at ω = |D|/|G|, PTM at the ω chosen on the
    development sets (where the frame has them) and PTM at its best grid ω, against θ_G: General,
    Skill and ExRef, their percent change from θ_G (computed per seed, then averaged), and
    training steps (the paper's cost)."""
    wide = per_seed(frame)
    agg = aggregate(wide)
    base = baseline(agg)
    dev = development_table(frame)
    rows = []
    for skill in skills:
        column = SUITE_COLUMN[skill]
        seeded = wide.assign(
            Skill=wide[column], Skill_se=wide[f"{column}_se"],
            General_change_pct=_change(wide["General"], base["General"]),
            Skill_change_pct=_change(wide[column], base[column]),
        )
        scores = [c for c in ("General", "Skill", "ExRef") if c in seeded.columns]
        points = aggregate(seeded, [*scores, "General_change_pct", "Skill_change_pct"])
        chosen = [
            ("θ_G", baseline(points), ""),
            ("CFT", best_of(points, "Skill", regime="cft", skills=skill),
             BEST_RULE.format(column=column, over=" over sizes")),
            ("RT", best_of(points, "Skill", regime="rt", skills=skill),
             BEST_RULE.format(column=column, over=" over sizes")),
            ("PTM heuristic ω", best_of(points, "Skill", regime="merge", skills=skill,
                                        method=method, weighting="heuristic"),
             # No |D|/|G| in a cell: the report shows the CSV as reStructuredText, where
             # |D| is a substitution reference.
             BEST_RULE.format(column=column, over=" over sizes")
             + "; ω = size of D / size of G"),
            ("PTM best ω", best_of(points, "Skill", regime="merge", skills=skill,
                                   method=method, weighting="grid"),
             BEST_RULE.format(column=column, over=" over sizes and the ω grid")),
        ]
        held_out = held_out_of(points, dev, column, regime="merge", skills=skill,
                               method=method, weighting="grid")
        if held_out is not None:
            chosen.insert(4, ("PTM held-out ω", held_out,
                              BEST_RULE.format(column=column + " on the development set",
                                               over=" over sizes and the ω grid")
                              + "; test scores at that ω"))
        for procedure, point, note in chosen:
            row = _table_row(procedure, point, [*scores, "General_change_pct",
                                                "Skill_change_pct"], note)
            row.pop("model")
            rows.append({"skill": skill, "procedure": procedure, **row})
    return _frame(rows)


def _suite_columns(agg: pd.DataFrame) -> list[str]:
    return [c for c in SUITE_COLUMN.values() if c in agg.columns]


def table4(frame: pd.DataFrame, skills: Sequence[str] = SKILLS,
           method: str = PTM_METHOD) -> pd.DataFrame:
    """Table 4: all skills at once. θ_G; PTM at the heuristic ω (one merge of every task vector);
    CFT on D1∪D2∪D3 from θ_G; RT on G∪D1∪D2∪D3 from θ_pre."""
    agg = results_table(frame)
    columns = _suite_columns(agg)
    joined = "+".join(skills)
    kinds = [("PTM (heuristic ω)", {"regime": "merge", "method": method,
                                    "weighting": "heuristic"}),
             ("CFT", {"regime": "cft"}), ("RT", {"regime": "rt"})]
    rows = [_table_row(BASELINE, baseline(agg), columns)]
    for label, kind in kinds:
        point = _only(pick(agg, skills=joined, **kind), f"{label} on {joined}")
        rows.append(_table_row(label, point, columns))
    return _frame(rows)


def merge_label(skills: str, method: str, size: str, ptm_method: str = PTM_METHOD) -> str:
    """'PTM science + coding', the method named when it is not the paper's, the size when not
    all data."""
    label = "PTM " + " + ".join(skills.split("+"))
    if method != ptm_method:
        label += f" ({METHOD_LABEL.get(method, method)})"
    sizes = set(size.split("+"))
    return label if sizes == {"all"} else f"{label} [{size}]"


def _omega_columns(row: dict, point: pd.Series, skills: Sequence[str]) -> None:
    for skill in skills:
        row[f"omega_{skill}"] = omega_value(point, skill)


def table5(frame: pd.DataFrame, skills: Sequence[str] = SKILLS,
           method: str = PTM_METHOD) -> pd.DataFrame:
    """Table 5: θ_G, then every merge at the heuristic ω (each skill alone, every pair, all),
    in the paper's skill order; the ω each skill's task vector got in omega_<skill>."""
    agg = results_table(frame)
    columns = _suite_columns(agg)
    merges = agg[(agg["regime"] == "merge") & (agg["method"] == method)
                 & (agg["weighting"] == "heuristic")]
    if merges.empty:
        raise ValueError(f"results frame: no heuristic-ω merge by method {method!r}")
    order = sorted(merges.index, key=lambda i: (
        len(merges.at[i, "skills"].split("+")),
        [list(skills).index(s) for s in merges.at[i, "skills"].split("+")],
        merges.at[i, "size"]))
    rows = []
    for point in [baseline(agg), *(merges.loc[i] for i in order)]:
        label = (BASELINE if point["regime"] == "general"
                 else merge_label(point["skills"], method, point["size"]))
        row = _table_row(label, point, columns)
        _omega_columns(row, point, skills)
        rows.append(row)
    return _frame(rows)


def merge_scope(skills: str) -> str:
    """How a merge's skills read in a table: "all skills" or "<skill> alone"."""
    parts = skills.split("+")
    return f"{parts[0]} alone" if len(parts) == 1 else " + ".join(parts)


def table6(frame: pd.DataFrame, skills: Sequence[str] = SKILLS,
           methods: Sequence[str] = ("ta", "ties", "dare", "dareties"),
           density: float | None = None) -> pd.DataFrame:
    """Table 6: each method's merge at the heuristic ω beside θ_G — every skill at once, then
    each skill alone (`merge`), methods in the order given. A method not evaluated for a merge is
    left out; none at all is an error. `density` (the share of each task vector the sparsifying
    methods keep) goes into the notes of the methods that read it."""
    agg = results_table(frame)
    columns = _suite_columns(agg)
    density_tags = {m.tag for m in METHODS.values() if "density" in m.options}
    rows = [_table_row(BASELINE, baseline(agg), columns, merge="", method="")]
    merges = ["+".join(skills), *skills] if len(skills) > 1 else list(skills)
    for joined in merges:
        for tag in methods:
            found = pick(agg, regime="merge", skills=joined, method=tag, weighting="heuristic")
            if found.empty:
                continue
            point = _only(found, f"{tag} merge of {joined}")
            note = f"density {density:g}" if density is not None and tag in density_tags else ""
            row = _table_row(METHOD_LABEL.get(tag, tag), point, columns, note,
                             merge=merge_scope(joined), method=tag)
            _omega_columns(row, point, skills)
            rows.append(row)
    if len(rows) == 1:
        raise ValueError(f"results frame: no heuristic-ω merge of {merges} by any of {methods}")
    return _frame(rows)


def cell_files(evals: Iterable[str | Path], model: str, suite: str) -> list[str]:
    """The evaluation files a table cell of `model`'s `suite` comes from, in every input eval
    folder named `model` (one per seed) — for Step.note_cell: the suite's JSON of a one-point
    evaluation; for an ω grid, summary.json, which holds every point's scores (each point's
    JSONs sit in a subfolder named by the evaluation)."""
    name = "summary.json" if "-grid-" in model else f"{suite}.json"
    files = [str(Path(folder) / name) for folder in evals if Path(folder).name == model]
    if not files:
        raise ValueError(f"no input evaluation folder is named {model!r}")
    return files


def table_cells(table: pd.DataFrame, evals: Iterable[str | Path],
                label_columns: Sequence[str] = ("model",)) -> list[tuple[str, str, list[str]]]:
    """(row, column, files) of every score cell of a table with a `source` column: the suite's
    JSON of the row's model in every seed's evaluation folder (Step.note_cell's arguments). A
    `Skill` column is the suite of the row's `skill`."""
    suites = {column: suite for suite, column in SUITE_COLUMN.items()}
    evals = list(evals)
    cells = []
    for _, row in table.iterrows():
        label = ": ".join(str(row[c]) for c in label_columns)
        for column in table.columns:
            suite = row["skill"] if column == "Skill" else suites.get(column)
            if suite is not None and pd.notna(row[column]):
                cells.append((label, column, cell_files(evals, row["source"], suite)))
    return cells


def write_table(
    table: pd.DataFrame,
    path: str | Path,
    *,
    step: Step,
    evals: Iterable[str | Path],
    label_columns: Sequence[str] = ("model",),
) -> None:
    """Write `table` as CSV (mtl.io.write_csv) and note in `step`'s record which evaluation
    files each score cell comes from, every seed's (`mtl-audit --cells`)."""
    write_csv(table, path)
    for row, column, files in table_cells(table, evals, label_columns):
        step.note_cell(row, column, files, config=["evaluation.suites"])
