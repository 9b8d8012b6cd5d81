"""The paper's tables, built from evaluation folders (their summary.json) only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = {"general": "General", "science": "Science", "safety": "Safety", "coding": "Coding",
           "exref": "ExRef"}


def read_summary(eval_dir: str | Path) -> dict:
    path = Path(eval_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable evaluation summary ({err})") from None


def merge_label(recipe: dict | None) -> str:
    return "θ_G (baseline)" if recipe is None else "PTM " + " + ".join(recipe["skills"])


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


SKILL_COLUMN = {"science": "Science", "safety": "Safety", "coding": "Coding"}


def plot_omega_sweep(frame: pd.DataFrame, path) -> None:
    """General vs. skill score along ω, one panel per skill, heuristic ω marked (Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skills = list(dict.fromkeys(frame["skill"]))
    fig, axes = plt.subplots(1, len(skills), figsize=(4.2 * len(skills), 3.6), squeeze=False)
    for ax, skill in zip(axes[0], skills, strict=True):
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
    axes[0][0].set_ylabel("score (%) — dotted: θ_G")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
