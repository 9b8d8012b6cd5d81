"""The paper's tables, built from evaluation folders (their summary.json) only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mtl.suites import SUITES

COLUMNS = {name: suite.column for name, suite in SUITES.items()}


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable {what} ({err})") from None


def read_summary(eval_dir: str | Path) -> dict:
    return _read_json(Path(eval_dir) / "summary.json", "evaluation summary")


def training_steps(model_dir: str | Path) -> int:
    """Optimizer steps a trained model folder took (its training_summary.json): Table 3's cost."""
    return _read_json(Path(model_dir) / "training_summary.json", "training summary")["steps"]


def merge_label(recipe: dict | None) -> str:
    """A row's name: the baseline, or the merged skills (and the method, if not the paper's)."""
    if recipe is None:
        return "θ_G (baseline)"
    label = "PTM " + " + ".join(recipe["skills"])
    return label if recipe["method"] == "task_arithmetic" else f"{label} ({recipe['method']})"


def table5(baseline: str, merges: list[str], suites: list[str], skills: list[str]) -> pd.DataFrame:
    """Rows θ_G and each merge at its heuristic ω; scores in percent with a stderr column each.

    The ω columns carry the weight each skill's task vector got (empty: not in the merge).
    """
    rows = []
    for folder in [baseline, *merges]:
        summary = read_summary(folder)
        if len(summary["points"]) != 1:
            count = len(summary["points"])
            raise ValueError(f"{folder}: expected one evaluated point, got {count}")
        point = summary["points"][0]
        recipe = summary.get("recipe")
        row: dict[str, object] = {"model": merge_label(recipe), "source": Path(folder).name}
        for suite in suites:
            score = point["scores"][suite]
            row[COLUMNS[suite]] = round(100 * score["score"], 2)
            row[f"{COLUMNS[suite]}_se"] = round(100 * score["stderr"], 2)
        for skill in skills:
            weights = dict(zip(recipe["skills"], point["omega"], strict=True)) if recipe else {}
            row[f"omega_{skill}"] = round(weights[skill], 4) if skill in weights else None
        rows.append(row)
    return pd.DataFrame(rows)


def omega_sweep(sweeps: list[str], baseline: str) -> pd.DataFrame:
    """Figure 1's data: every suite's score along the ω grid, one block of rows per skill."""
    base = read_summary(baseline)["points"][0]["scores"]
    rows = []
    for folder in sweeps:
        summary = read_summary(folder)
        (skill,) = summary["recipe"]["skills"]
        heuristic = summary["heuristic_omega"][0]
        for point in summary["points"]:
            row = {"skill": skill, "omega": point["omega"][0], "heuristic_omega": heuristic}
            for suite, score in point["scores"].items():
                row[COLUMNS[suite]] = round(100 * score["score"], 2)
                row[f"{COLUMNS[suite]}_se"] = round(100 * score["stderr"], 2)
                row[f"{COLUMNS[suite]}_baseline"] = round(100 * base[suite]["score"], 2)
            rows.append(row)
    return pd.DataFrame(rows)


def best_point(summary: dict, skill: str) -> dict:
    """The grid point with the highest skill score (the smallest ω among ties).

    Like the paper's "best PTM", it is chosen on the evaluation sets themselves, so it is an
    upper bound on what a tuned ω gives, not a held-out estimate.
    """
    return max(summary["points"], key=lambda p: (p["scores"][skill]["score"], -p["omega"][0]))


def _change(value: float, base: float) -> float | None:
    """Percent change against θ_G, as the paper's Table 3 reports it; none from a zero base."""
    return round(100 * (value - base) / base, 1) if base else None


def table3(baseline: str, procedures: dict[str, dict[str, str]], steps: dict[str, dict[str, int]],
           suites: list[str]) -> pd.DataFrame:
    """Per skill: θ_G, CFT, RT, and PTM at ω = |D|/|G| and at its best grid ω (Table 3's shape).

    procedures[skill] names the evaluation folders: "CFT", "RT", "heuristic" and "grid";
    steps[skill] the optimizer steps each procedure trained for ("CFT", "RT", "PTM"), the
    paper's cost measure. Scores in percent with stderr; changes in percent of θ_G's score.
    """
    base_point = read_summary(baseline)["points"][0]
    rows = []
    for skill, folders in procedures.items():
        kept = [s for s in ("general", skill, "exref") if s in suites]
        base = {s: base_point["scores"][s]["score"] for s in kept}
        first = {kind: read_summary(folders[kind])["points"][0] for kind in ("CFT", "RT",
                                                                             "heuristic")}
        cost = steps[skill]
        candidates = [
            ("θ_G", baseline, base_point, None),
            ("CFT", folders["CFT"], first["CFT"], cost["CFT"]),
            ("RT", folders["RT"], first["RT"], cost["RT"]),
            ("PTM heuristic ω", folders["heuristic"], first["heuristic"], cost["PTM"]),
            ("PTM best ω", folders["grid"], best_point(read_summary(folders["grid"]), skill),
             cost["PTM"]),
        ]
        for procedure, folder, point, n_steps in candidates:
            row: dict[str, object] = {
                "skill": skill, "procedure": procedure, "source": Path(folder).name,
                "omega": round(point["omega"][0], 4) if point.get("omega") else None,
            }
            for suite in kept:
                name = "Skill" if suite == skill else COLUMNS[suite]
                row[name] = round(100 * point["scores"][suite]["score"], 2)
                row[f"{name}_se"] = round(100 * point["scores"][suite]["stderr"], 2)
            if "general" in kept:
                row["General_change_pct"] = _change(point["scores"]["general"]["score"],
                                                    base["general"])
            row["Skill_change_pct"] = _change(point["scores"][skill]["score"], base[skill])
            row["train_steps"] = n_steps
            rows.append(row)
    return pd.DataFrame(rows)


SKILL_COLUMN = {"science": "Science", "safety": "Safety", "coding": "Coding"}


def _panel_row(count: int, height: float):
    """A figure with one row of `count` panels (matplotlib's file-only backend: jobs have no
    display, and importing it only here keeps it off every other step's start-up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, height), squeeze=False)
    return fig, axes[0]


def _save_png(fig, path, rect: tuple[float, float, float, float] | None = None) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def plot_omega_sweep(frame: pd.DataFrame, path) -> None:
    """General vs. skill score along ω, one panel per skill, heuristic ω marked (Figure 1)."""
    skills = list(dict.fromkeys(frame["skill"]))
    fig, axes = _panel_row(len(skills), 3.6)
    for ax, skill in zip(axes, skills, strict=True):
        part = frame[frame["skill"] == skill].sort_values("omega")
        lines = [("General", "tab:blue"), (SKILL_COLUMN.get(skill, skill), "tab:orange")]
        if skill == "safety":
            lines.append(("ExRef", "tab:green"))
        for column, color in lines:
            ax.errorbar(part["omega"], part[column], yerr=part[f"{column}_se"], color=color,
                        marker="o", ms=3, capsize=2, label=column)
            ax.axhline(part[f"{column}_baseline"].iloc[0], color=color, ls=":", lw=1)
        heuristic = part["heuristic_omega"].iloc[0]
        if heuristic == heuristic:  # not NaN
            ax.axvline(heuristic, color="gray", ls="--", lw=1, label=f"|D|/|G| = {heuristic:.2f}")
        ax.set_title(f"θ_G + ω·τ_{skill}")
        ax.set_xlabel("ω")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("score (%) — dotted: θ_G")
    _save_png(fig, path)


PROCEDURE_STYLE = {  # marker, color
    "θ_G": ("s", "black"),
    "CFT": ("v", "tab:red"),
    "RT": ("^", "tab:blue"),
    "PTM heuristic ω": ("*", "tab:orange"),
    "PTM best ω": ("D", "tab:orange"),
}


def plot_procedures(table: pd.DataFrame, sweep: pd.DataFrame, path) -> None:
    """Table 3 as a picture: General vs. skill score per procedure, one panel per skill, with
    PTM's path along the ω grid, so the trade-off each procedure makes is visible at a glance."""
    skills = list(dict.fromkeys(table["skill"]))
    fig, axes = _panel_row(len(skills), 3.8)
    for ax, skill in zip(axes, skills, strict=True):
        path_ = sweep[sweep["skill"] == skill].sort_values("omega")
        column = SKILL_COLUMN.get(skill, skill)
        ax.plot(path_["General"], path_[column], color="tab:orange", lw=1, alpha=0.6,
                label="PTM along ω")
        for _, point in path_.iloc[:: max(1, len(path_) // 5)].iterrows():
            ax.annotate(f"{point['omega']:g}", (point["General"], point[column]), fontsize=6,
                        color="tab:orange", xytext=(3, -8), textcoords="offset points")
        for _, row in table[table["skill"] == skill].iterrows():
            marker, color = PROCEDURE_STYLE[row["procedure"]]
            ax.errorbar(row["General"], row["Skill"], xerr=row["General_se"],
                        yerr=row["Skill_se"], marker=marker, color=color, ms=8, capsize=2,
                        ls="none", label=row["procedure"])
        ax.set_title(skill)
        ax.set_xlabel("General (%)")
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("skill score (%)")
    # One legend under the panels: inside, it would cover points in one panel or another.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=8)
    _save_png(fig, path, rect=(0, 0.08, 1, 1))
