"""The tables from synthetic all_results frames: headline metrics only, mean and sample sd over
seeds, `best` over sizes and ω on the seed mean with its tie-break, and each table's rows."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
from results_frame import SEEDS, frame, general, merge, point, trained

from mtl.io import write_csv
from mtl.tables import (
    aggregate,
    best,
    cell_files,
    per_seed,
    results_table,
    table2,
    table3,
    table4,
    table5,
    table6,
    table_cells,
    write_table,
)

THREE = "science+safety+coding"
BASE = {"general": 70.0, "science": 10.0, "safety": 0.0, "coding": 5.0, "exref": 100.0}


def _scores(general_=60.0, science=10.0, safety=0.0, coding=5.0, exref=100.0) -> dict:
    return {"general": general_, "science": science, "safety": safety, "coding": coding,
            "exref": exref}


def test_per_seed_keeps_only_headline_metrics_one_column_per_suite():
    wide = per_seed(frame(general(BASE, stderr=2.5)))
    assert len(wide) == 1
    row = wide.iloc[0]
    assert [row[c] for c in ("General", "Science", "Safety", "Coding", "ExRef")] == [
        70.0, 10.0, 0.0, 5.0, 100.0]
    assert row["General_se"] == 2.5 and row["steps"] == 300


def test_a_repeated_point_and_a_missing_column_are_named():
    twice = frame(general(BASE), general(BASE))
    with pytest.raises(ValueError, match=r"repeat a \(point, seed, suite\).*'general'"):
        per_seed(twice)
    with pytest.raises(ValueError, match=r"missing columns \['omega'\]"):
        per_seed(frame(general(BASE)).drop(columns="omega"))


def test_mean_and_sample_sd_over_seeds_and_the_seeds_count():
    values = [30.0, 40.0, 65.0]
    rows = [trained("cft", "science", "all", seed, _scores(science=v), steps=54)
            for seed, v in zip(SEEDS, values, strict=True)]
    agg = aggregate(per_seed(frame(general(BASE), *rows))).set_index("model")
    assert agg.loc["cft-science-all", "Science"] == pytest.approx(statistics.mean(values))
    assert agg.loc["cft-science-all", "Science_sd"] == pytest.approx(statistics.stdev(values))
    assert agg.loc["cft-science-all", "seeds"] == 3
    # θ_G is trained once: one seed, no sd.
    assert agg.loc["general", "seeds"] == 1 and math.isnan(agg.loc["general", "Science_sd"])


def _grid(method: str, skill: str, size: str, science_by_omega: dict[str, list[float]],
          steps: float = 50) -> list[list[dict]]:
    return [merge(method, "grid", skill, size, omega, seed, _scores(science=v), steps=steps)
            for omega, values in science_by_omega.items()
            for seed, v in zip(SEEDS, values, strict=True)]


def test_best_is_chosen_on_the_seed_mean_not_on_one_lucky_seed():
    # ω 0.9 has the single best seed (90) but the lower mean; ω 0.5 wins on the mean.
    rows = _grid("ta", "science", "all", {"0.5": [50, 50, 50], "0.9": [90, 10, 10]})
    agg = results_table(frame(general(BASE), *rows))
    assert best(agg[agg["regime"] == "merge"], "Science")["omega"] == "0.5"


def test_best_ties_go_to_fewer_steps_then_smaller_omega():
    small = _grid("ta", "science", "n100", {"0.7": [40] * 3, "1.0": [40] * 3}, steps=10)
    large = _grid("ta", "science", "all", {"0.3": [40] * 3}, steps=50)
    agg = results_table(frame(general(BASE), *small, *large))
    chosen = best(agg[agg["regime"] == "merge"], "Science")
    assert (chosen["size"], chosen["omega"]) == ("n100", "0.7")
    # Equal steps: the smaller ω.
    agg = results_table(frame(general(BASE), *_grid("ta", "science", "all",
                                                    {"0.8": [40] * 3, "0.6": [40] * 3})))
    assert best(agg[agg["regime"] == "merge"], "Science")["omega"] == "0.6"


def _science_sizes() -> pd.DataFrame:
    """Science at two sizes: CFT best at the small size, RT at the large, PTM at (all, 0.6)."""
    points = [general(BASE)]
    for seed in SEEDS:
        points += [trained("cft", "science", "n100", seed, _scores(30, 45), steps=20),
                   trained("cft", "science", "all", seed, _scores(25, 40), steps=60),
                   trained("rt", "science", "n100", seed, _scores(70, 30), steps=320),
                   trained("rt", "science", "all", seed, _scores(71, 38), steps=360)]
    points += _grid("ta", "science", "n100", {"0.6": [20, 21, 22], "1.0": [25, 26, 27]}, 20)
    points += _grid("ta", "science", "all", {"0.6": [35, 36, 40], "1.0": [30, 31, 32]}, 60)
    # A heuristic merge and another method's grid must not be candidates for best PTM.
    points += [merge("ta", "heuristic", "science", "all", "0.22", s, _scores(65, 90))
               for s in SEEDS]
    points += _grid("linear", "science", "all", {"0.5": [99, 99, 99]})
    return frame(*points)


def test_table2_best_cft_rt_ptm_over_sizes_and_omega_with_size_omega_steps():
    table = table2(_science_sizes()).set_index("model")
    assert list(table.index) == ["θ_G (baseline)", "best CFT", "best RT", "best PTM"]
    assert list(table.columns[:3]) == ["source", "size", "omega"]
    assert table.loc["best CFT", ["size", "Science", "steps"]].tolist() == ["n100", 45.0, 20]
    assert table.loc["best RT", ["size", "Science", "steps"]].tolist() == ["all", 38.0, 360]
    ptm = table.loc["best PTM"]
    assert (ptm["source"], ptm["size"], ptm["omega"], ptm["steps"]) == (
        "merge-ta-grid-science-all", "all", "0.6", 60)
    assert ptm["Science"] == pytest.approx(37.0)
    assert ptm["Science_sd"] == pytest.approx(round(statistics.stdev([35, 36, 40]), 2))
    assert ptm["seeds"] == 3 and table.loc["θ_G (baseline)", "seeds"] == 1
    assert "highest Science (mean over seeds)" in ptm["note"] and "ω grid" in ptm["note"]
    assert "ties" in table.loc["best CFT", "note"]


def _one_skill(skill: str, cft: list[float], rt: list[float], heur: list[float],
               grid: dict[str, list[float]]) -> list[list[dict]]:
    points = []
    for seed, c, r, h in zip(SEEDS, cft, rt, heur, strict=True):
        points += [trained("cft", skill, "all", seed, _scores(35, **{skill: c}), steps=60),
                   trained("rt", skill, "all", seed, _scores(72, **{skill: r}), steps=310),
                   merge("ta", "heuristic", skill, "all", "0.24", seed,
                         _scores(70, **{skill: h}), steps=60)]
    for omega, values in grid.items():
        points += [merge("ta", "grid", skill, "all", omega, seed,
                         _scores(72 - 10 * float(omega), **{skill: v}), steps=60)
                   for seed, v in zip(SEEDS, values, strict=True)]
    return points


def _dev(skill: str, grid: dict[str, list[float]]) -> list[list[dict]]:
    """The grid's points on the development set: metric "dev/score" (mtl.results.DEV_PREFIX)."""
    points = []
    for omega, values in grid.items():
        for seed, v in zip(SEEDS, values, strict=True):
            rows = merge("ta", "grid", skill, "all", omega, seed, {skill: v}, steps=60)
            points.append([{**row, "metric": "dev/" + row["metric"]} for row in rows])
    return points


def test_table3_held_out_omega_is_chosen_on_the_development_set_and_scored_on_test():
    # On the test set ω 1.0 is best (50); on the development set ω 0.5 is (its mean 40 > 20).
    points = [general(BASE), *_one_skill("coding", [100] * 3, [90, 95, 100], [5, 10, 15],
                                         {"0.5": [20, 30, 40], "1.0": [50, 50, 50]})]
    held = [*points, *_dev("coding", {"0.5": [40, 40, 40], "1.0": [10, 20, 30]})]
    table = table3(frame(*held), skills=["coding"]).set_index("procedure")
    assert list(table.index) == ["θ_G", "CFT", "RT", "PTM heuristic ω", "PTM held-out ω",
                                 "PTM best ω"]
    # The test scores at the development set's ω: mean 30, General 72 - 10 × 0.5.
    assert table.loc["PTM held-out ω", ["omega", "Skill", "Skill_sd"]].tolist() == [
        "0.5", 30.0, 10.0]
    assert table.loc["PTM held-out ω", "General"] == pytest.approx(67.0)
    assert "development set" in table.loc["PTM held-out ω", "note"]
    assert table.loc["PTM best ω", "omega"] == "1.0"
    # Without development-set rows the table has no held-out row.
    assert "PTM held-out ω" not in set(table3(frame(*points), skills=["coding"])["procedure"])


def test_table3_per_skill_procedures_changes_and_costs():
    points = [general(BASE), *_one_skill("coding", [100, 100, 100], [90, 95, 100], [5, 10, 15],
                                         {"0.5": [20, 30, 40], "1.0": [50, 50, 50]})]
    table = table3(frame(*points), skills=["coding"]).set_index("procedure")
    assert list(table.index) == ["θ_G", "CFT", "RT", "PTM heuristic ω", "PTM best ω"]
    # Changes are computed per seed and averaged: against θ_G's General 70 and Coding 5.
    assert table.loc["CFT", "General_change_pct"] == pytest.approx(-50.0)
    assert table.loc["PTM heuristic ω", "Skill_change_pct"] == pytest.approx(100.0)
    assert table.loc["PTM heuristic ω", "Skill_change_pct_sd"] == pytest.approx(100.0)
    assert table.loc["PTM best ω", ["omega", "Skill"]].tolist() == ["1.0", 50.0]
    assert table.loc["PTM best ω", "General"] == pytest.approx(62.0)
    assert table.loc["RT", "Skill_sd"] == pytest.approx(5.0)
    assert table.loc["RT", "steps"] == 310 and pd.isna(table.loc["θ_G", "Skill_sd"])
    assert table.loc["θ_G", "steps"] == 300
    # θ_G's safety is 0: a change from zero is no percentage.
    safety = [general(BASE), *_one_skill("safety", [100] * 3, [100] * 3, [50] * 3,
                                         {"0.3": [100] * 3})]
    assert table3(frame(*safety), skills=["safety"])["Skill_change_pct"].isna().all()


def _three_skill(seed: int, shift: float) -> list[list[dict]]:
    return [
        merge("ta", "heuristic", THREE, "all+all+all", "0.22+0.24+0.57", seed,
              _scores(69 + shift, 8, 60, 0, 95), steps=250),
        trained("cft", THREE, "all+all+all", seed, _scores(30 + shift, 40, 100, 100, 10),
                steps=250),
        trained("rt", THREE, "all+all+all", seed, _scores(71 + shift, 42, 100, 100, 70),
                steps=560),
    ]


def test_table4_rows_and_columns_in_paper_order():
    points = [general(BASE)] + [p for s, d in zip(SEEDS, (-1, 0, 1), strict=True)
                                for p in _three_skill(s, d)]
    table = table4(frame(*points)).set_index("model")
    assert list(table.index) == ["θ_G (baseline)", "PTM (heuristic ω)", "CFT", "RT"]
    scores = [c for c in table.columns if c in ("General", "Science", "Safety", "Coding",
                                                 "ExRef")]
    assert scores == ["General", "Science", "Safety", "Coding", "ExRef"]
    assert table.loc["CFT", ["General", "General_sd", "ExRef"]].tolist() == [30.0, 1.0, 10.0]
    assert table.loc["PTM (heuristic ω)", "omega"] == "0.22+0.24+0.57"
    assert table.loc["RT", "steps"] == 560


def test_table4_names_an_ambiguous_row():
    points = [general(BASE), *_three_skill(1234, 0),
              trained("cft", THREE, "n100+n100+n100", 1234, _scores(), steps=10)]
    with pytest.raises(ValueError, match=r"expected one CFT on .*got 2"):
        table4(frame(*points))


def test_table5_orders_rows_and_places_each_omega_under_its_skill():
    points = [general(BASE)]
    specs = [("science+coding", "all+all", "0.22+0.57"), ("safety", "all", "0.24"),
             (THREE, "all+all+all", "0.22+0.24+0.57"), ("science", "all", "0.22")]
    for index, (skills, size, omega) in enumerate(specs):
        points += [merge("ta", "heuristic", skills, size, omega, seed,
                         _scores(60 + index, 10 + seed % 7)) for seed in SEEDS]
    points += [merge("ties", "heuristic", "safety", "all", "0.24", 1234, _scores())]
    table = table5(frame(*points)).set_index("model")
    assert list(table.index) == ["θ_G (baseline)", "PTM science", "PTM safety",
                                 "PTM science + coding", "PTM science + safety + coding"]
    assert table.loc["PTM science + coding", ["omega_science", "omega_safety",
                                              "omega_coding"]].tolist()[::2] == [0.22, 0.57]
    assert pd.isna(table.loc["PTM science + coding", "omega_safety"])
    assert table.loc["PTM safety", "General"] == 61.0
    science = [10 + s % 7 for s in SEEDS]
    assert table.loc["PTM science", "Science"] == pytest.approx(round(statistics.mean(science),
                                                                      2))
    assert table.loc["PTM science", "Science_sd"] == pytest.approx(
        round(statistics.stdev(science), 2))
    assert table.loc["θ_G (baseline)", "source"] == "general"


def test_table6_every_method_on_all_skills_then_each_skill_alone():
    points = [general(BASE)]
    for tag, value in (("ta", 50), ("dare", 40), ("ties", 30)):
        points += [merge(tag, "heuristic", THREE, "all+all+all", "0.22+0.24+0.57", seed,
                         _scores(safety=value)) for seed in SEEDS]
    # Each skill alone: only two methods evaluated for safety; none for the others.
    for tag, value in (("ties", 70), ("crumbs", 80)):
        points += [merge(tag, "heuristic", "safety", "all", "0.24", seed,
                         _scores(safety=value)) for seed in SEEDS]
    table = table6(frame(*points), methods=["ta", "ties", "dare", "crumbs"], density=0.5)
    assert list(zip(table["merge"], table["model"], strict=True)) == [
        ("", "θ_G (baseline)"),
        ("science + safety + coding", "Task arithmetic"), ("science + safety + coding", "TIES"),
        ("science + safety + coding", "DARE"),
        ("safety alone", "TIES"), ("safety alone", "Breadcrumbs")]
    rows = table.set_index(["merge", "model"])
    every = "science + safety + coding"
    assert rows.loc[(every, "DARE"), "note"] == "density 0.5"
    assert rows.loc[(every, "Task arithmetic"), "note"] == ""
    assert rows.loc[("safety alone", "Breadcrumbs"), "note"] == "density 0.5"
    assert rows.loc[(every, "TIES"), ["method", "Safety", "omega_coding"]].tolist() == [
        "ties", 30.0, 0.57]
    assert rows.loc[("safety alone", "TIES"), "Safety"] == 70.0
    assert pd.isna(rows.loc[("safety alone", "TIES"), "omega_coding"])
    with pytest.raises(ValueError, match="no heuristic-ω merge"):
        table6(frame(general(BASE)))


def test_cell_files_are_the_suite_json_of_every_seed_folder():
    evals = ["results/evals/general", "results/evals/seed-2/cft-science-all",
             "results/evals/seed-3/cft-science-all", "results/evals/seed-3/rt-science-all"]
    assert cell_files(evals, "cft-science-all", "science") == [
        "results/evals/seed-2/cft-science-all/science.json",
        "results/evals/seed-3/cft-science-all/science.json"]
    with pytest.raises(ValueError, match="'ptm-x'"):
        cell_files(evals, "ptm-x", "general")


def test_point_rows_of_a_non_headline_metric_are_ignored():
    rows = frame(point("general", "general", 1234, {"general": 70.0}, steps=1))
    assert results_table(rows)["General"].tolist() == [70.0]


def _coding_table3() -> tuple[pd.DataFrame, list[str]]:
    """Table 3 of one skill and the evaluation folders of its rows, every seed's."""
    points = [general(BASE), *_one_skill("coding", [100] * 3, [90] * 3, [5] * 3,
                                         {"1.0": [50] * 3})]
    table = table3(frame(*points), skills=["coding"])
    evals = ["results/evals/general"] + [
        f"results/evals/seed-{seed}/{model}" for seed in SEEDS
        for model in ("cft-coding-all", "rt-coding-all", "merge-ta-heuristic-coding-all",
                      "merge-ta-grid-coding-all")]
    return table, evals


def test_table_cells_name_each_score_cells_files_per_seed():
    table, evals = _coding_table3()
    cells = {(row, column): files for row, column, files in
             table_cells(table, evals, ("skill", "procedure"))}
    assert cells[("coding: θ_G", "Skill")] == ["results/evals/general/coding.json"]
    assert cells[("coding: RT", "ExRef")] == [
        f"results/evals/seed-{seed}/rt-coding-all/exref.json" for seed in SEEDS]
    assert {column for _, column in cells} == {"General", "Skill", "ExRef"}
    assert cells[("coding: PTM best ω", "General")] == [
        f"results/evals/seed-{seed}/merge-ta-grid-coding-all/summary.json" for seed in SEEDS]


class _Recorder:
    """What a step program's Step records of note_cell calls."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], tuple[list[str], list[str]]] = {}

    def note_cell(self, row: str, column: str, files: list[str], config: list[str]) -> None:
        self.cells[(row, column)] = (files, config)


def test_write_table_writes_the_csv_and_notes_each_score_cell(tmp_path):
    table, evals = _coding_table3()
    step = _Recorder()
    write_table(table, tmp_path / "table3.csv", step=step, evals=evals,
                label_columns=("skill", "procedure"))
    back = pd.read_csv(tmp_path / "table3.csv")
    assert list(back.columns) == list(table.columns) and len(back) == len(table)
    assert step.cells[("coding: RT", "ExRef")] == (
        [f"results/evals/seed-{seed}/rt-coding-all/exref.json" for seed in SEEDS],
        ["evaluation.suites"])
    assert len(step.cells) == len(table_cells(table, evals, ("skill", "procedure")))
    write_csv(table, tmp_path / "plain.csv")  # the CSV alone, as the figures write theirs
    assert (tmp_path / "plain.csv").read_text() == (tmp_path / "table3.csv").read_text()
