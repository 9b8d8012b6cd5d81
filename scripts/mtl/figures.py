"""The paper's figures: each a data function of the all_results frame (a CSV's rows, averaged over
seeds as mtl.tables does) and a plot of that data (mean line or point, ±1 sd over seeds as a band
or error bar)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from mtl.io import atomic_file
from mtl.suites import SKILLS
from mtl.tables import (
    METHOD_LABEL,
    PTM_METHOD,
    SUITE_COLUMN,
    baseline,
    omega_value,
    pick,
    results_table,
)

# Figure 2's two WiSE-FT lines: method tag of the merge -> legend label. The tag of the merge
# whose θ_CFT was trained on D plus as much G (cft-match) is the one the merge registry gives it.
WISEFT_VARIANTS = {"wiseft": "θ_CFT on D", "wiseftmatch": "θ_CFT on D + matching G"}
FIGURE3_METHODS = ("ta", "linear", "wiseft")
# Figure 5's procedures: regime -> label (merges are PTM whatever their weighting).
SAFETY_PROCEDURES = {"cft": "CFT", "rt": "RT", "cft-match": "CFT-match",
                     "merge": "PTM"}


def _scores(agg: pd.DataFrame) -> list[str]:
    columns = [c for c in SUITE_COLUMN.values() if c in agg.columns]
    return [x for c in columns for x in (c, f"{c}_sd")]


def _sweep(agg: pd.DataFrame, method: str, skill: str) -> pd.DataFrame:
    """The single-skill grid points of one merge method, ω as a number, sorted by size and ω."""
    rows = agg[(agg["regime"] == "merge") & (agg["method"] == method)
               & (agg["weighting"] == "grid") & (agg["skills"] == skill)].copy()
    rows["omega"] = [omega_value(r) for _, r in rows.iterrows()]
    return rows.sort_values(["size", "omega"])


def figure1(frame: pd.DataFrame, skills: Sequence[str] = SKILLS,
            method: str = PTM_METHOD) -> pd.DataFrame:
    """Every suite's score along the ω grid, per skill (and size); the heuristic ω of the same
    skill and size (its merge must be in the frame) and θ_G's score in <column>_baseline."""
    agg = results_table(frame)
    base = baseline(agg)
    parts = []
    for skill in skills:
        sweep = _sweep(agg, method, skill)
        heuristic = agg[(agg["regime"] == "merge") & (agg["method"] == method)
                        & (agg["weighting"] == "heuristic") & (agg["skills"] == skill)]
        omega = {r["size"]: omega_value(r) for _, r in heuristic.iterrows()}
        unmarked = sorted(set(sweep["size"]) - set(omega))
        if unmarked:
            raise ValueError(f"results frame: no heuristic-ω {method!r} merge of {skill} at "
                             f"size(s) {unmarked} to mark |D|/|G| on its ω sweep")
        part = sweep[["size", "omega", *_scores(agg), "seeds"]].copy()
        part.insert(0, "skill", skill)
        part.insert(3, "heuristic_omega", part["size"].map(omega))
        for column in SUITE_COLUMN.values():
            if column in agg.columns:
                part[f"{column}_baseline"] = base[column]
        parts.append(part)
    data = pd.concat(parts, ignore_index=True)
    if data.empty:
        raise ValueError(f"results frame: no single-skill grid merge by {method!r} for {skills}")
    return data.round(4)


def figure2(frame: pd.DataFrame, skills: Sequence[str] = ("science",),
            variants: Mapping[str, str] | None = None) -> pd.DataFrame:
    """WiSE-FT along ω per skill, one line per θ_CFT: trained on D, or on D plus as much general
    data (`variants`: merge method tag -> label). General and the skill's score per point."""
    variants = dict(variants or WISEFT_VARIANTS)
    agg = results_table(frame)
    parts = []
    for skill in skills:
        column = SUITE_COLUMN[skill]
        for tag, label in variants.items():
            sweep = _sweep(agg, tag, skill)
            if sweep.empty:
                raise ValueError(f"results frame: no WiSE-FT grid merge tagged {tag!r} "
                                 f"({label}) for {skill}")
            part = pd.DataFrame({"skill": skill, "variant": label, "method": tag,
                                 "size": sweep["size"], "omega": sweep["omega"],
                                 "General": sweep["General"], "General_sd": sweep["General_sd"],
                                 "Skill": sweep[column], "Skill_sd": sweep[f"{column}_sd"],
                                 "seeds": sweep["seeds"]})
            parts.append(part)
    return pd.concat(parts, ignore_index=True).round(4)


def figure3(frame: pd.DataFrame, skills: Sequence[str] = SKILLS,
            methods: Sequence[str] = FIGURE3_METHODS,
            compared: Sequence[str] = ()) -> pd.DataFrame:
    """Per skill, each PTM method (task arithmetic, linear, WiSE-FT) along the ω grid (`kind`
    "grid"), and each `compared` method's merge of the skill alone at the heuristic ω (`kind`
    "heuristic"): General and the skill's score per point. A sweep not evaluated is an error; a
    compared method not evaluated for a skill is left out."""
    agg = results_table(frame)
    parts = []
    for skill in skills:
        column = SUITE_COLUMN[skill]
        for tag in methods:
            sweep = _sweep(agg, tag, skill)
            if sweep.empty:
                raise ValueError(f"results frame: no grid merge by {tag!r} for {skill}")
            parts.append(_figure3_rows(sweep, skill, tag, "grid", column))
        for tag in compared:
            point = pick(agg, regime="merge", skills=skill, method=tag, weighting="heuristic")
            if not point.empty:
                point = point.assign(omega=[omega_value(r) for _, r in point.iterrows()])
                parts.append(_figure3_rows(point, skill, tag, "heuristic", column))
    return pd.concat(parts, ignore_index=True).round(4)


def _figure3_rows(points: pd.DataFrame, skill: str, tag: str, kind: str,
                  column: str) -> pd.DataFrame:
    return pd.DataFrame({
        "skill": skill, "kind": kind, "method": METHOD_LABEL.get(tag, tag),
        "size": points["size"], "omega": points["omega"], "General": points["General"],
        "General_sd": points["General_sd"], "Skill": points[column],
        "Skill_sd": points[f"{column}_sd"], "seeds": points["seeds"]})


def table2_points(frame: pd.DataFrame, skill: str = "science",
                  method: str = PTM_METHOD) -> pd.DataFrame:
    """Table 2's candidates: every CFT and RT size and every PTM grid point (size, ω), with
    General and the skill's score, for the picture beside the table."""
    agg = results_table(frame)
    column = SUITE_COLUMN[skill]
    kinds = {"CFT": (agg["regime"] == "cft"), "RT": (agg["regime"] == "rt"),
             "PTM": (agg["regime"] == "merge") & (agg["method"] == method)
             & (agg["weighting"] == "grid")}
    parts = []
    for label, mask in kinds.items():
        rows = agg[mask & (agg["skills"] == skill)]
        parts.append(pd.DataFrame({
            "procedure": label, "size": rows["size"],
            "omega": [omega_value(r) for _, r in rows.iterrows()],
            "General": rows["General"], "General_sd": rows["General_sd"],
            "Skill": rows[column], "Skill_sd": rows[f"{column}_sd"], "steps": rows["steps"],
            "seeds": rows["seeds"]}))
    return pd.concat(parts, ignore_index=True).sort_values(["procedure", "size", "omega"])


def _safety_columns(points: pd.DataFrame) -> pd.DataFrame:
    return points[["General", "General_sd", "ExRef", "ExRef_sd", "Safety", "Safety_sd",
                   "seeds"]]


def figure4(frame: pd.DataFrame, methods: Sequence[str] = FIGURE3_METHODS) -> pd.DataFrame:
    """General against ExRef along the safety ω grid, one curve per merge method (those
    evaluated; none is an error); the first row is θ_G."""
    agg = results_table(frame)
    base = baseline(agg)
    rows = [pd.DataFrame({"method": ["θ_G"], "size": [""], "omega": [float("nan")]})
            .join(_safety_columns(base.to_frame().T).reset_index(drop=True))]
    for tag in methods:
        sweep = _sweep(agg, tag, "safety")
        if not sweep.empty:
            head = pd.DataFrame({"method": METHOD_LABEL.get(tag, tag), "size": sweep["size"],
                                 "omega": sweep["omega"]})
            rows.append(head.join(_safety_columns(sweep)))
    if len(rows) == 1:
        raise ValueError(f"results frame: no safety grid merge by any of {list(methods)}")
    return _numeric(pd.concat(rows, ignore_index=True))


def figure5(frame: pd.DataFrame, method: str = PTM_METHOD) -> pd.DataFrame:
    """General against ExRef of every model trained on safety data: CFT, RT and CFT on D +
    matching G at every size, and every PTM merge (method `method`, any weighting, alone or
    with other skills) that includes the safety task vector; θ_G first."""
    agg = results_table(frame)
    with_safety = agg[agg["skills"].map(lambda s: "safety" in s.split("+"))]
    trained = with_safety[with_safety["regime"].isin(SAFETY_PROCEDURES)
                          & ((with_safety["regime"] != "merge")
                             | (with_safety["method"] == method))]
    if trained.empty:
        raise ValueError("results frame: no model trained on safety data")
    base = baseline(agg).to_frame().T
    points = pd.concat([base, trained], ignore_index=True)
    labels = [SAFETY_PROCEDURES[regime] + ("" if skills == "safety" else " (all skills)"
                                           if skills == "+".join(SKILLS) else f" ({skills})")
              for regime, skills in zip(trained["regime"], trained["skills"], strict=True)]
    data = pd.DataFrame({
        "procedure": ["θ_G", *labels],
        "model": points["model"], "skills": points["skills"], "size": points["size"],
        "weighting": points["weighting"], "omega": points["omega"]})
    return _numeric(data.join(_safety_columns(points)))


def _numeric(data: pd.DataFrame) -> pd.DataFrame:
    for column in ("General", "General_sd", "ExRef", "ExRef_sd", "Safety", "Safety_sd"):
        data[column] = pd.to_numeric(data[column]).round(4)
    data["seeds"] = data["seeds"].astype(int)
    return data


# ---- plots ------------------------------------------------------------------------------------


def _panel_row(count: int, height: float):
    """A figure with one row of `count` panels (matplotlib's file-only backend: jobs have no
    display, and importing it only here keeps it off every other step's start-up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, height), squeeze=False)
    return fig, axes[0]


def _save_png(fig, path, rect: tuple[float, float, float, float] | None = None) -> None:
    """Write `fig` to the file `path` atomically (a reader never sees half a PNG)."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, dpi=120, format="png")
    plt.close(fig)


def _line(ax, x, mean, sd, color: str, label: str, ls: str = "-") -> None:
    """Mean over seeds as a line, ±1 sd over seeds as a band (no band from one seed)."""
    ax.plot(x, mean, color=color, marker="o", ms=3, ls=ls, label=label)
    if sd.notna().any():
        ax.fill_between(x, mean - sd.fillna(0), mean + sd.fillna(0), color=color, alpha=0.2,
                        lw=0)


def _percent_axes(ax, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)


def plot_figure1(data: pd.DataFrame, path) -> None:
    """General vs. skill score along ω, one panel per skill (and size), heuristic ω marked."""
    panels = list(dict.fromkeys(zip(data["skill"], data["size"], strict=True)))
    fig, axes = _panel_row(len(panels), 3.6)
    for ax, (skill, size) in zip(axes, panels, strict=True):
        part = data[(data["skill"] == skill) & (data["size"] == size)]
        lines = [("General", "tab:blue"), (SUITE_COLUMN[skill], "tab:orange")]
        if skill == "safety" and "ExRef" in part.columns:
            lines.append(("ExRef", "tab:green"))
        for column, color in lines:
            _line(ax, part["omega"], part[column], part[f"{column}_sd"], color, column)
            ax.axhline(part[f"{column}_baseline"].iloc[0], color=color, ls=":", lw=1)
        ax.plot([], [], color="gray", ls=":", lw=1, label="θ_G (dotted)")
        heuristic = part["heuristic_omega"].iloc[0]
        if pd.notna(heuristic):
            ax.axvline(heuristic, color="gray", ls="--", lw=1, label=f"|D|/|G| = {heuristic:.2f}")
        title = f"θ_G + ω·τ_{skill}"
        ax.set_title(title if size == "all" else f"{title} ({size})")
        _percent_axes(ax, "ω")
        ax.legend(fontsize=7, loc="lower left")
    seeds = int(data["seeds"].max())
    axes[0].set_ylabel(f"score (%), mean ± sd ({seeds} seeds)")
    _save_png(fig, path)


def plot_figure2(data: pd.DataFrame, path) -> None:
    """WiSE-FT along ω: General and skill score, solid for θ_CFT on D, dashed for D + G."""
    skills = list(dict.fromkeys(data["skill"]))
    fig, axes = _panel_row(len(skills), 3.6)
    styles = ["-", "--", ":", "-."]
    for ax, skill in zip(axes, skills, strict=True):
        part = data[data["skill"] == skill]
        for ls, variant in zip(styles, dict.fromkeys(part["variant"]), strict=False):
            line = part[part["variant"] == variant]
            _line(ax, line["omega"], line["General"], line["General_sd"], "tab:blue",
                  f"General, {variant}", ls)
            _line(ax, line["omega"], line["Skill"], line["Skill_sd"], "tab:orange",
                  f"{SUITE_COLUMN[skill]}, {variant}", ls)
        ax.set_title(f"WiSE-FT (1 − ω)·θ_G + ω·θ_CFT, {skill}")
        _percent_axes(ax, "ω")
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("score (%), mean ± sd over seeds")
    _save_png(fig, path)


def _tradeoff(ax, x, y, xerr, yerr, color: str, label: str, marker: str = "o",
              ls: str = "-") -> None:
    ax.errorbar(x, y, xerr=xerr.fillna(0), yerr=yerr.fillna(0), color=color, marker=marker,
                ms=4, capsize=2, lw=1, ls=ls, label=label)


COLORS = ["tab:orange", "tab:purple", "tab:green", "tab:red", "tab:brown", "tab:pink"]


def plot_figure3(data: pd.DataFrame, path) -> None:
    """Per skill, General (x) against the skill score (y): the ω sweeps as lines, every
    compared method's heuristic-ω merge as a marker, one legend for all panels."""
    skills = list(dict.fromkeys(data["skill"]))
    fig, axes = _panel_row(len(skills), 4.6)
    import matplotlib

    sweeps = data[data["kind"] == "grid"]
    points = data[data["kind"] == "heuristic"]
    palette = matplotlib.colormaps["tab20"]
    point_style = {method: (palette(i % 20), "osD^v<>ph*"[i % 10])
                   for i, method in enumerate(dict.fromkeys(points["method"]))}
    for ax, skill in zip(axes, skills, strict=True):
        part = sweeps[sweeps["skill"] == skill]
        for color, method in zip(COLORS, dict.fromkeys(part["method"]), strict=False):
            line = part[part["method"] == method]
            _tradeoff(ax, line["General"], line["Skill"], line["General_sd"], line["Skill_sd"],
                      color, f"{method} (ω grid)")
        for method, point in points[points["skill"] == skill].groupby("method", sort=False):
            color, marker = point_style[method]
            ax.errorbar(point["General"], point["Skill"], xerr=point["General_sd"].fillna(0),
                        yerr=point["Skill_sd"].fillna(0), color=color, marker=marker, ms=6,
                        capsize=2, ls="none", label=f"{method} (heuristic ω)")
        ax.set_title(skill)
        ax.set_xlim(-3, 103)
        _percent_axes(ax, "General (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=5, frameon=False)
    axes[0].set_ylabel("skill score (%), mean ± sd over seeds")
    rows = -(-len(labels) // 5)
    _save_png(fig, path, rect=(0, 0.045 * rows + 0.02, 1, 1))


def plot_figure4(data: pd.DataFrame, path) -> None:
    """General (x) against ExRef (y) along the safety ω grid, one curve per method."""
    fig, axes = _panel_row(1, 3.8)
    ax = axes[0]
    for color, method in zip(["black", *COLORS], dict.fromkeys(data["method"]), strict=False):
        line = data[data["method"] == method]
        _tradeoff(ax, line["General"], line["ExRef"], line["General_sd"], line["ExRef_sd"],
                  color, method, marker="s" if method == "θ_G" else "o")
    ax.set_title("safety merges along ω")
    ax.set_xlim(-3, 103)
    _percent_axes(ax, "General (%)")
    ax.set_ylabel("ExRef: safe-prompt compliance (%)")
    ax.legend(fontsize=7, loc="lower left")
    _save_png(fig, path)


MARKERS = {"θ_G": ("s", "black"), "CFT": ("v", "tab:red"), "RT": ("^", "tab:blue"),
           "CFT-match": ("<", "tab:pink"), "PTM": ("o", "tab:orange")}


def plot_figure5(data: pd.DataFrame, path) -> None:
    """General (x) against ExRef (y) of every model trained on safety data."""
    fig, axes = _panel_row(1, 3.8)
    ax = axes[0]
    for procedure in dict.fromkeys(data["procedure"]):
        points = data[data["procedure"] == procedure]
        # One marker per procedure; its multi-skill variant hollow.
        marker, color = MARKERS[procedure.split(" (")[0]]
        ax.errorbar(points["General"], points["ExRef"], xerr=points["General_sd"].fillna(0),
                    yerr=points["ExRef_sd"].fillna(0), marker=marker, color=color, ms=6,
                    capsize=2, ls="none", label=procedure,
                    mfc="none" if " (" in procedure else color)
    ax.set_title("every safety-trained model")
    ax.set_xlim(-3, 103)
    _percent_axes(ax, "General (%)")
    ax.set_ylabel("ExRef: safe-prompt compliance (%)")
    ax.legend(fontsize=7, loc="lower left")
    _save_png(fig, path)


def plot_table2(table: pd.DataFrame, points: pd.DataFrame, skill: str, path) -> None:
    """Table 2 as a picture: General vs. skill score of every size (PTM: a path along ω per
    size), the table's best rows ringed."""
    fig, axes = _panel_row(1, 4.0)
    ax = axes[0]
    colors = {"CFT": "tab:red", "RT": "tab:blue", "PTM": "tab:orange"}
    for procedure, color in colors.items():
        part = points[points["procedure"] == procedure]
        for size in dict.fromkeys(part["size"]):
            line = part[part["size"] == size]
            ax.errorbar(line["General"], line["Skill"], xerr=line["General_sd"].fillna(0),
                        yerr=line["Skill_sd"].fillna(0), color=color, marker="o", ms=3,
                        capsize=2, lw=1, ls="-" if procedure == "PTM" else "none",
                        label=f"{procedure} {size}", alpha=0.7)
    column = SUITE_COLUMN[skill]
    for _, row in table.iterrows():
        ax.plot(row["General"], row[column], marker="o", ms=12, mfc="none", color="black")
        ax.annotate(row["model"], (row["General"], row[column]), fontsize=7,
                    xytext=(6, 4), textcoords="offset points")
    ax.set_title(f"{skill} across data sizes")
    ax.set_xlim(-3, 103)
    _percent_axes(ax, "General (%)")
    ax.set_ylabel(f"{column} (%), mean ± sd over seeds")
    ax.legend(fontsize=6, loc="lower left")
    _save_png(fig, path)


PROCEDURE_STYLE = {  # marker, color
    "θ_G": ("s", "black"),
    "CFT": ("v", "tab:red"),
    "RT": ("^", "tab:blue"),
    "PTM heuristic ω": ("*", "tab:orange"),
    "PTM best ω": ("D", "tab:orange"),
    "PTM held-out ω": ("P", "tab:orange"),
}


def plot_table3(table: pd.DataFrame, sweep: pd.DataFrame, path) -> None:
    """Table 3 as a picture: General vs. skill score per procedure, one panel per skill, with
    PTM's path along the ω grid (figure1's data), so each procedure's trade-off is visible."""
    skills = list(dict.fromkeys(table["skill"]))
    fig, axes = _panel_row(len(skills), 3.8)
    for ax, skill in zip(axes, skills, strict=True):
        path_ = sweep[sweep["skill"] == skill].sort_values("omega")
        column = SUITE_COLUMN[skill]
        ax.plot(path_["General"], path_[column], color="tab:orange", lw=1, alpha=0.6,
                label="PTM along ω")
        for _, point in path_.iloc[:: max(1, len(path_) // 5)].iterrows():
            ax.annotate(f"{point['omega']:g}", (point["General"], point[column]), fontsize=6,
                        color="tab:orange", xytext=(3, -8), textcoords="offset points")
        for _, row in table[table["skill"] == skill].iterrows():
            marker, color = PROCEDURE_STYLE[row["procedure"]]
            ax.errorbar(row["General"], row["Skill"], xerr=_zero(row["General_sd"]),
                        yerr=_zero(row["Skill_sd"]), marker=marker, color=color, ms=8,
                        capsize=2, ls="none", label=row["procedure"])
        ax.set_title(skill)
        ax.set_xlim(-3, 103)
        _percent_axes(ax, "General (%)")
    axes[0].set_ylabel("skill score (%), mean ± sd over seeds")
    # One legend under the panels: inside, it would cover points in one panel or another.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=8)
    _save_png(fig, path, rect=(0, 0.08, 1, 1))


def _zero(value: float) -> float:
    return 0.0 if pd.isna(value) else value
