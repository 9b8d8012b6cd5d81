"""Table 3 from synthetic evaluation folders: best grid ω, percent changes, costs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mtl.tables import best_point, table3

SUITES = ["general", "safety", "exref"]


def _point(omega, general, safety, exref=1.0):
    scores = {"general": general, "safety": safety, "exref": exref}
    return {"omega": omega, "scores": {k: {"score": v, "stderr": 0.01} for k, v in scores.items()}}


def _folder(root: Path, name: str, points: list[dict]) -> str:
    (root / name).mkdir()
    (root / name / "summary.json").write_text(json.dumps({"points": points}))
    return str(root / name)


def test_best_point_takes_the_highest_skill_score_and_the_smallest_omega_among_ties():
    summary = {"points": [_point([w], 0.7, s) for w, s in [(0.2, 0.1), (0.5, 0.9), (0.6, 0.9)]]}
    assert best_point(summary, "safety")["omega"] == [0.5]


def test_table3_rows_changes_and_costs(tmp_path):
    base = _folder(tmp_path, "general", [_point(None, 0.8, 0.0)])
    folders = {
        "CFT": _folder(tmp_path, "cft", [_point(None, 0.4, 1.0, exref=0.0)]),
        "RT": _folder(tmp_path, "rt", [_point(None, 0.8, 1.0)]),
        "heuristic": _folder(tmp_path, "heur", [_point([0.24], 0.8, 0.5)]),
        "grid": _folder(tmp_path, "grid", [_point([w], 0.8 - w / 4, w) for w in (0, 0.5, 1.0)]),
    }
    table = table3(base, {"safety": folders}, {"safety": {"CFT": 60, "RT": 310, "PTM": 60}},
                   SUITES).set_index("procedure")
    assert list(table.index) == ["θ_G", "CFT", "RT", "PTM heuristic ω", "PTM best ω"]
    assert table.loc["CFT", "General_change_pct"] == pytest.approx(-50.0)
    assert table.loc["CFT", "ExRef"] == 0.0
    # θ_G's safety is 0: a change from zero is no percentage.
    assert table["Skill_change_pct"].isna().all()
    assert table.loc["PTM best ω", "omega"] == 1.0 and table.loc["PTM best ω", "Skill"] == 100.0
    assert table.loc["PTM heuristic ω", "omega"] == 0.24
    assert table.loc["RT", "train_steps"] == 310 and pd.isna(table.loc["θ_G", "train_steps"])

