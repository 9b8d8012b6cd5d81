"""Figures 1-5 from synthetic all_results frames: which points each figure takes, their mean and
sd over seeds, and that every plot renders a PNG."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest
from results_frame import SEEDS, frame, general, merge, trained

from mtl.figures import (
    figure1,
    figure2,
    figure3,
    figure4,
    figure5,
    plot_figure1,
    plot_figure2,
    plot_figure3,
    plot_figure4,
    plot_figure5,
    plot_table2,
    plot_table3,
    table2_points,
)
from mtl.tables import table2, table3

BASE = {"general": 70.0, "science": 10.0, "safety": 0.0, "coding": 5.0, "exref": 100.0}
SKILLS = ("science", "safety", "coding")
THREE = "+".join(SKILLS)
OMEGA = {"science": "0.22", "safety": "0.24", "coding": "0.57"}
GRID = ("0", "0.5", "1")


def _scores(skill: str, omega: float, seed_index: int, method_shift: float = 0.0) -> dict:
    """Scores that differ by skill, ω, seed and method, so a value from the wrong row shows."""
    value = 20 + 60 * omega + seed_index + method_shift
    return {**BASE, "general": 70 - 20 * omega - seed_index, skill: value,
            "exref": 100 - 30 * omega - method_shift}


def _world() -> pd.DataFrame:
    points = [general(BASE)]
    for skill in SKILLS:
        for i, seed in enumerate(SEEDS):
            points.append(merge("ta", "heuristic", skill, "all", OMEGA[skill], seed,
                                _scores(skill, float(OMEGA[skill]), i)))
            for shift, tag in enumerate(("ta", "linear", "wiseft", "wiseftmatch")):
                for omega in GRID:
                    points.append(merge(tag, "grid", skill, "all", omega, seed,
                                        _scores(skill, float(omega), i, 5.0 * shift)))
            for regime, general_ in (("cft", 30.0), ("rt", 71.0), ("cft-match", 50.0)):
                points.append(trained(regime, skill, "all", seed,
                                      {**BASE, "general": general_ + i, skill: 90.0,
                                       "exref": 20.0 + i}, steps=60))
    for i, seed in enumerate(SEEDS):
        points.append(merge("ta", "heuristic", THREE, "all+all+all", "0.22+0.24+0.57", seed,
                            {**BASE, "safety": 50.0 + i}))
        points.append(trained("cft", THREE, "all+all+all", seed, {**BASE, "general": 40.0},
                              steps=200))
        # Another method's safety merge is no PTM point of figure 5.
        points.append(merge("ties", "heuristic", "safety", "all", "0.24", seed, BASE))
    return frame(*points)


WORLD = _world()


def test_figure1_sweeps_with_heuristic_omega_baseline_and_seed_band():
    data = figure1(WORLD)
    safety = data[data["skill"] == "safety"].set_index("omega")
    assert list(safety.index) == [0.0, 0.5, 1.0]
    assert (safety["heuristic_omega"] == 0.24).all()
    assert (safety["General_baseline"] == 70.0).all() and (safety["seeds"] == 3).all()
    assert safety.loc[0.5, "Safety"] == pytest.approx(20 + 30 + 1)  # mean of seeds 0, 1, 2
    assert safety.loc[0.5, "Safety_sd"] == pytest.approx(1.0)
    assert safety.loc[1.0, "General"] == pytest.approx(49.0)
    # Only task arithmetic's sweep (linear's ExRef would be 5 lower).
    assert safety.loc[1.0, "ExRef"] == pytest.approx(70.0)


def test_figure1_needs_each_sweeps_heuristic_merge():
    world = WORLD[WORLD["model"] != "merge-ta-heuristic-coding-all"]
    with pytest.raises(ValueError, match=r"no heuristic-ω 'ta' merge of coding"):
        figure1(world)


def test_figure2_one_line_per_wiseft_variant():
    data = figure2(WORLD)
    assert set(data["skill"]) == {"science"}
    assert list(dict.fromkeys(data["variant"])) == ["θ_CFT on D", "θ_CFT on D + matching G"]
    match = data[data["method"] == "wiseftmatch"].set_index("omega")
    assert match.loc[1.0, "Skill"] == pytest.approx(20 + 60 + 1 + 15)
    with pytest.raises(ValueError, match=r"tagged 'nope'"):
        figure2(WORLD, variants={"nope": "x"})


def test_figure3_each_method_per_skill():
    data = figure3(WORLD)
    assert list(dict.fromkeys(data["method"])) == ["Task arithmetic", "Linear", "WiSE-FT"]
    coding = data[(data["skill"] == "coding") & (data["method"] == "WiSE-FT")]
    assert coding["Skill"].tolist() == pytest.approx([31.0, 61.0, 91.0])
    assert coding["General_sd"].tolist() == pytest.approx([1.0] * 3)


def test_figure3_marks_each_compared_methods_heuristic_merge_of_a_skill_alone():
    data = figure3(WORLD, compared=["ta", "ties"])
    points = data[data["kind"] == "heuristic"]
    # Task arithmetic merged each skill alone; TIES only safety: its other skills are left out.
    assert sorted(points[points["method"] == "Task arithmetic"]["skill"]) == [
        "coding", "safety", "science"]
    assert points[points["method"] == "TIES"]["skill"].tolist() == ["safety"]
    expected = WORLD[(WORLD["model"] == "merge-ta-heuristic-coding-all")
                     & (WORLD["metric"] == "score") & (WORLD["suite"] == "coding")]
    coding = points[points["skill"] == "coding"].iloc[0]
    assert coding["Skill"] == pytest.approx(expected["value"].mean())
    assert len(data[data["kind"] == "grid"]) == len(figure3(WORLD))


def test_figure4_safety_grid_per_method_after_theta_g():
    data = figure4(WORLD)
    assert data.iloc[0]["method"] == "θ_G" and data.iloc[0]["seeds"] == 1
    linear = data[data["method"] == "Linear"]
    assert linear["ExRef"].tolist() == pytest.approx([95.0, 80.0, 65.0])
    assert len(data) == 1 + 3 * len(GRID)


def test_figure5_every_safety_trained_model():
    data = figure5(WORLD)
    assert data.iloc[0]["procedure"] == "θ_G"
    by_model = data.set_index("model")
    assert by_model.loc["cft-safety-all", "procedure"] == "CFT"
    assert by_model.loc["cft-science-all+safety-all+coding-all", "procedure"] == (
        "CFT (all skills)")
    assert by_model.loc["merge-ta-heuristic-science-all+safety-all+coding-all",
                        "procedure"] == "PTM (all skills)"
    assert by_model.loc["cft-match-safety-all", "ExRef"] == pytest.approx(21.0)
    assert by_model.loc["cft-match-safety-all", "ExRef_sd"] == pytest.approx(
        statistics.stdev([20, 21, 22]))
    # Not trained on safety, or not PTM: left out.
    assert "cft-science-all" not in by_model.index
    assert "merge-ties-heuristic-safety-all" not in by_model.index
    # Safety's own PTM points: its heuristic merge and task arithmetic's grid.
    assert (by_model["procedure"] == "PTM").sum() == 1 + len(GRID)


def test_table2_points_are_every_size_and_grid_point_of_the_skill():
    points = table2_points(WORLD)
    assert points.groupby("procedure").size().to_dict() == {"CFT": 1, "PTM": len(GRID),
                                                             "RT": 1}
    ptm = points[points["procedure"] == "PTM"]
    assert ptm["Skill"].tolist() == pytest.approx([21.0, 51.0, 81.0])


def test_table3_names_a_missing_sweep():
    world = WORLD[~WORLD["model"].str.startswith("merge-ta-grid-science")]
    with pytest.raises(ValueError, match="no point with regime 'merge', skills 'science'"):
        table3(world)


def test_every_plot_writes_a_png(tmp_path):
    plots = {
        "figure1": (plot_figure1, figure1(WORLD)), "figure2": (plot_figure2, figure2(WORLD)),
        "figure3": (plot_figure3, figure3(WORLD, compared=["ta"])),
        "figure4": (plot_figure4, figure4(WORLD)),
        "figure5": (plot_figure5, figure5(WORLD)),
    }
    for name, (plot, data) in plots.items():
        plot(data, tmp_path / f"{name}.png")
    # With development sets, Table 3 also holds the held-out ω's row.
    table = table3(WORLD)
    held_out = table[table["procedure"] == "PTM best ω"].assign(procedure="PTM held-out ω")
    plot_table3(pd.concat([table, held_out]), figure1(WORLD), tmp_path / "table3.png")
    plot_table2(table2(WORLD), table2_points(WORLD), "science", tmp_path / "table2.png")
    for name in [*plots, "table3", "table2"]:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
