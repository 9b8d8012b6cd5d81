"""Our table 5 beside the paper's published numbers (results/paper_reference.csv).

Each row also carries the ω our merge applied per skill and the paper's heuristic ω (reference
rows of table `omega`), flagged where they differ by more than TOLERANCE: such a row merged at
another point than the paper's, so its scores compare unlike things.
"""

from __future__ import annotations

import math

import pandas as pd

from mtl.omega import TOLERANCE
from mtl.suites import skill_rank

COLUMNS = ("General", "Science", "Safety", "Coding", "ExRef")
# General's parts in the reference row; the paper's General also averages AlpacaEval / 100.
GENERAL_PARTS = ("MMLU", "GSM8K", "BBH", "TruthfulQA")
GENERAL_NOTE = ("the paper's General includes AlpacaEval (GPT-4 judge, not run here); ours is "
                "the mean of MMLU, GSM8K, BBH and TruthfulQA")


def row_key(source: str) -> str:
    """'general' -> 'baseline'; 'merge-ta-heuristic-science-all+coding-all' -> 'science+coding'."""
    if source == "general":
        return "baseline"
    prefix = "merge-ta-heuristic-"
    if not source.startswith(prefix):
        return source
    skills = [part.rsplit("-", 1)[0] for part in source[len(prefix):].split("+")]
    return "+".join(sorted(skills, key=skill_rank))


def omega_columns(model: dict, key: str, paper_omega: dict[str, float]) -> dict:
    """Our ω and the paper's for a table 5 row ("+"-joined in skill order), the largest gap
    and the flag; empty for θ_G (no merge). A skill the paper states no ω for is an error."""
    skills = [] if key == "baseline" else key.split("+")
    missing = [s for s in skills if s not in paper_omega]
    if missing:
        raise ValueError(f"paper reference: no row of table 'omega' for {missing}")
    ours = [model.get(f"omega_{s}") for s in skills]
    if any(w is None or (isinstance(w, float) and math.isnan(w)) for w in ours):
        raise ValueError(f"table 5 row {model.get('model')!r}: no omega_<skill> value for "
                         f"{skills}")
    gap = max((abs(float(w) - paper_omega[s]) for w, s in zip(ours, skills, strict=True)),
              default=None)
    return {"omega": "+".join(f"{float(w):.4g}" for w in ours),
            "omega_paper": "+".join(f"{paper_omega[s]:.4g}" for s in skills),
            "omega_difference": None if gap is None else round(gap, 4),
            "omega_flag": (f"ω differs from the paper's by {gap:.3f} > {TOLERANCE}"
                           if gap is not None and gap > TOLERANCE else "")}


def read_reference(path: str) -> pd.DataFrame:
    reference = pd.read_csv(path)
    missing = {"table", "row", "column", "value", "source"} - set(reference.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return reference


def compare(table5: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, column) the paper reports: ours, the paper's, ours − paper."""
    published = reference[reference["table"].isin(["table4", "table5"])]
    lookup = {(r.row, r.column): (float(r.value), r.source) for r in published.itertuples()}
    paper_omega = {r.row: float(r.value) for r in
                   reference[reference["table"] == "omega"].itertuples()}
    rows = []
    for model in table5.itertuples():
        key = row_key(model.source)
        if key != "baseline" and not any((key, c) in lookup for c in COLUMNS):
            continue
        omegas = omega_columns(model._asdict(), key, paper_omega)
        for column in COLUMNS:
            if (key, column) not in lookup:
                continue
            ours = float(getattr(model, column))
            paper, source = lookup[(key, column)]
            rows.append({"model": model.model, "source": model.source, "column": column,
                         "ours": ours, "paper": paper, "difference": round(ours - paper, 2),
                         "paper_source": source,
                         "note": GENERAL_NOTE if column == "General" else "", **omegas})
        if key == "baseline":
            rows.append({**_general_without_alpaca(model, reference), **omegas})
    if not rows:
        raise ValueError("table 5 has no row the paper reports (expected 'general' or "
                         "'merge-ta-heuristic-…' sources)")
    return pd.DataFrame(rows)


def _general_without_alpaca(model, reference: pd.DataFrame) -> dict:
    """The paper's baseline General recomputed without AlpacaEval, from its reference row."""
    parts = reference[(reference["table"] == "eval_reference")
                      & (reference["row"] == "baseline")].set_index("column")["value"]
    missing = [p for p in GENERAL_PARTS if p not in parts]
    if missing:
        raise ValueError(f"paper reference: eval_reference baseline lacks {missing}")
    paper = round(100 * sum(float(parts[p]) for p in GENERAL_PARTS) / len(GENERAL_PARTS), 2)
    ours = float(model.General)
    return {"model": model.model, "source": model.source, "column": "General (no AlpacaEval)",
            "ours": ours, "paper": paper, "difference": round(ours - paper, 2),
            "paper_source": "authors' reference row: 100 × mean(MMLU, GSM8K, BBH, TruthfulQA)",
            "note": "like for like: both without AlpacaEval"}
