"""Our table 5 beside the paper's published numbers (results/paper_reference.csv)."""

from __future__ import annotations

import pandas as pd

SKILL_ORDER = ("science", "safety", "coding")
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
    return "+".join(sorted(skills, key=lambda s: (SKILL_ORDER.index(s)
                                                  if s in SKILL_ORDER else len(SKILL_ORDER), s)))


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
    rows = []
    for model in table5.itertuples():
        key = row_key(model.source)
        for column in COLUMNS:
            if (key, column) not in lookup:
                continue
            ours = float(getattr(model, column))
            paper, source = lookup[(key, column)]
            rows.append({"model": model.model, "source": model.source, "column": column,
                         "ours": ours, "paper": paper, "difference": round(ours - paper, 2),
                         "paper_source": source,
                         "note": GENERAL_NOTE if column == "General" else ""})
        if key == "baseline":
            rows.append(_general_without_alpaca(model, reference))
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
