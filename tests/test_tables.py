"""Tables 3 and 5 and Figure 1's data from synthetic evaluation folders: every column from its
own suite, skill and field; best grid ω, percent changes, costs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mtl.tables import best_point, omega_sweep, table3, table5

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



# Table 5 from synthetic evaluation folders: every suite a different score and stderr, so a
# value read from the wrong suite, field or skill cannot match.
TABLE5_SUITES = ["general", "science", "safety", "coding", "exref"]
# The paper's column names, spelled here rather than read from the code under test.
COLUMNS = {"general": "General", "science": "Science", "safety": "Safety", "coding": "Coding",
           "exref": "ExRef"}
SKILLS = ["science", "safety", "coding"]


def _scores(offset: float) -> dict:
    return {
        suite: {"score": 0.1 * index + offset, "stderr": 0.01 * index + offset / 10}
        for index, suite in enumerate(TABLE5_SUITES, start=1)
    }


def _eval_folder(root: Path, name: str, skills: list[str] | None, omega: list[float] | None,
                 offset: float, points: int = 1) -> str:
    recipe = {"method": "task_arithmetic", "skills": skills} if skills else None
    summary = {"recipe": recipe, "points": [{"omega": omega, "scores": _scores(offset)}] * points}
    (root / name).mkdir()
    (root / name / "summary.json").write_text(json.dumps(summary))
    return str(root / name)


def test_table5_every_column_comes_from_its_own_suite_and_skill(tmp_path):
    base = _eval_folder(tmp_path, "general", None, None, 0.001)
    merges = {
        "merge-a": (["safety"], [0.24], 0.002),
        "merge-b": (["science", "coding"], [0.22, 0.57], 0.003),
        "merge-c": (["science", "safety", "coding"], [0.22, 0.24, 0.57], 0.004),
    }
    folders = [_eval_folder(tmp_path, name, *spec) for name, spec in merges.items()]
    table = table5(base, folders, TABLE5_SUITES, SKILLS).set_index("source")
    assert list(table.index) == ["general", *merges]
    assert list(table["model"]) == ["θ_G (baseline)", "PTM safety", "PTM science + coding",
                                    "PTM science + safety + coding"]
    offsets = {"general": 0.001, **{name: spec[2] for name, spec in merges.items()}}
    for source, offset in offsets.items():
        for suite, value in _scores(offset).items():
            column = COLUMNS[suite]
            assert table.loc[source, column] == pytest.approx(100 * value["score"], abs=0.005)
            assert table.loc[source, f"{column}_se"] == pytest.approx(100 * value["stderr"],
                                                                      abs=0.005)
    # Each ω sits under the skill it weighted; a skill left out of a merge has none.
    for source, (skills, omega, _) in merges.items():
        for skill in SKILLS:
            expected = dict(zip(skills, omega, strict=True)).get(skill)
            cell = table.loc[source, f"omega_{skill}"]
            assert pd.isna(cell) if expected is None else cell == expected, (source, skill)
    assert table.loc["general", [f"omega_{s}" for s in SKILLS]].isna().all()


def test_table5_refuses_a_folder_with_several_points(tmp_path):
    base = _eval_folder(tmp_path, "general", None, None, 0.0)
    grid = _eval_folder(tmp_path, "grid", ["safety"], [0.5], 0.1, points=3)
    with pytest.raises(ValueError, match=r"grid: expected one evaluated point, got 3"):
        table5(base, [grid], TABLE5_SUITES, SKILLS)


def test_omega_sweep_rows_carry_each_points_scores_and_the_baseline(tmp_path):
    base = _eval_folder(tmp_path, "general", None, None, 0.001)
    grid = tmp_path / "grid"
    grid.mkdir()
    points = [{"omega": [w], "scores": _scores(w / 10)} for w in (0.0, 0.5, 1.0)]
    (grid / "summary.json").write_text(json.dumps({"recipe": {"skills": ["safety"]},
                                                   "heuristic_omega": [0.24], "points": points}))
    sweep = omega_sweep([str(grid)], base)
    assert list(sweep["omega"]) == [0.0, 0.5, 1.0]
    assert (sweep["skill"] == "safety").all() and (sweep["heuristic_omega"] == 0.24).all()
    for (_, row), point in zip(sweep.iterrows(), points, strict=True):
        for suite, value in point["scores"].items():
            assert row[COLUMNS[suite]] == pytest.approx(100 * value["score"], abs=0.005)
            assert row[f"{COLUMNS[suite]}_se"] == pytest.approx(100 * value["stderr"], abs=0.005)
            assert row[f"{COLUMNS[suite]}_baseline"] == pytest.approx(
                100 * _scores(0.001)[suite]["score"], abs=0.005)
