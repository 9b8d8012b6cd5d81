"""results/all_results.csv's frame (mtl.results.collect): evaluation folders laid out as
scripts/evaluate.py writes them, with suite results computed by mtl.evaluation's Evaluator from
lm-eval-shaped outputs; what each row says, steps, ω, seeds, round trips and clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mtl.evaluation import Evaluator, TaskSpec
from mtl.io import write_json
from mtl.merge import Recipe
from mtl.regimes import REGIMES, regime_of
from mtl.results import (
    COLUMNS,
    HEADLINE,
    ResultsError,
    collect,
    development,
    headline,
    read,
)

TOY = {suite: [TaskSpec(f"toy_{suite}", metric)] for suite, metric in
       (("general", "exact_match"), ("science", "exact_match"), ("safety", "refusal"))}


def raw_output(task: str, metric: str, value: float, stderr: float, n: int) -> dict:
    """lm-eval's result dict for one task, as simple_evaluate returns it."""
    return {
        "results": {task: {"alias": task, f"{metric},none": value,
                           f"{metric}_stderr,none": stderr}},
        "n-samples": {task: {"original": n, "effective": n}},
    }


def suite_results(specs: dict[str, list[TaskSpec]], values: dict[str, float]) -> dict:
    """Evaluator.run's output (the library's own suite arithmetic) for lm-eval outputs whose
    metric value per task is `values[task]`, stderr a tenth of it, 10 + len(task) samples."""
    raw = {spec.task: raw_output(spec.task, spec.metric, values[spec.task],
                                 values[spec.task] / 10, 10 + len(spec.task))
           for tasks in specs.values() for spec in tasks}
    evaluator = Evaluator.__new__(Evaluator)
    evaluator.specs = specs
    evaluator._evaluate_all = lambda *_: raw
    return evaluator.run()


def write_eval(folder: Path, seed: int, points: list[tuple[str, list[float] | None, dict]],
               recipe: dict | None = None) -> Path:
    """An evaluation folder as scripts/evaluate.py writes it: one JSON per suite and point."""
    summary = []
    for key, omega, results in points:
        for suite, result in results.items():
            write_json(folder / key / f"{suite}.json", result)
        summary.append({"point": key or None, "omega": omega,
                        "scores": {s: {"score": r["score"], "stderr": r["stderr"]}
                                   for s, r in results.items()}})
    write_json(folder / "summary.json", {"model": folder.name, "seed": seed, "recipe": recipe,
                                         "heuristic_omega": None, "points": summary})
    return folder


def write_model(folder: Path, steps: int) -> Path:
    """A trained model folder's training record (what collect reads of it)."""
    write_json(folder / "training_summary.json", {"regime": folder.name, "steps": steps,
                                                  "examples": 10 * steps, "final_loss": 1.0,
                                                  "config": {}})
    return folder


def toy_values(scale: float) -> dict[str, float]:
    return {"toy_general": 0.5 * scale, "toy_science": 0.25 * scale, "toy_safety": 0.125 * scale}


def recipe(method: str, skills: list[str], weighting: str, seed: int) -> dict:
    return Recipe.from_config({"method": method}, seed=seed, skills=skills,
                              weighting=weighting).to_params()


@pytest.fixture
def run(tmp_path: Path) -> dict[str, list[Path]]:
    """θ_G (shared, base seed 1234), and at seed 2: θ_D of science and safety, CFT on science,
    a science ω sweep and a heuristic two-skill merge."""
    evals, models = tmp_path / "evals", tmp_path / "models"
    seeded = evals / "seed-2"
    return {
        "evals": [
            write_eval(evals / "general", 1234, [("", None, suite_results(TOY, toy_values(1)))]),
            write_eval(seeded / "cft-science-all", 2,
                       [("", None, suite_results(TOY, toy_values(1.5)))]),
            write_eval(seeded / "merge-ta-grid-science-all", 2, [
                ("omega-0.0", [0.0], suite_results(TOY, toy_values(1))),
                ("omega-0.5", [0.5], suite_results(TOY, toy_values(1.2))),
            ], recipe("task_arithmetic", ["science"], "grid", 2)),
            # Inputs given in a non-paper order: the row still names skills in paper order.
            write_eval(seeded / "merge-ta-heuristic-safety-n30+science-all", 2, [
                ("", [0.3, 0.22], suite_results(TOY, toy_values(0.8))),
            ], recipe("task_arithmetic", ["safety", "science"], "heuristic", 2)),
        ],
        "models": [
            write_model(models / "general", 40),
            write_model(models / "seed-2" / "ptm-science-all", 7),
            write_model(models / "seed-2" / "ptm-safety-n30", 5),
            write_model(models / "seed-2" / "cft-science-all", 9),
            # Another seed's θ_D never counts toward seed 2's merges.
            write_model(models / "seed-3" / "ptm-science-all", 1000),
        ],
    }


def test_every_row_describes_its_evaluation(run):
    frame = collect(run["evals"], run["models"])
    assert list(frame.columns) == COLUMNS
    first = frame.drop_duplicates("model").set_index("model")
    described = first[["seed", "regime", "method", "weighting", "skills", "size", "steps"]]
    assert described.to_dict("index") == {
        "general": {"seed": 1234, "regime": "general", "method": "", "weighting": "",
                    "skills": "", "size": "", "steps": 40},
        "cft-science-all": {"seed": 2, "regime": "cft", "method": "", "weighting": "",
                            "skills": "science", "size": "all", "steps": 9},
        "merge-ta-grid-science-all": {"seed": 2, "regime": "merge", "method": "ta",
                                      "weighting": "grid", "skills": "science", "size": "all",
                                      "steps": 7},
        "merge-ta-heuristic-safety-n30+science-all": {
            "seed": 2, "regime": "merge", "method": "ta", "weighting": "heuristic",
            "skills": "science+safety", "size": "all+n30", "steps": 7 + 5},
    }
    merge = frame[frame["model"].str.startswith("merge-ta-heuristic")]
    assert set(merge["omega"]) == {"0.22+0.3"}  # parallel to skills: science first
    assert set(frame.loc[frame["model"] == "merge-ta-grid-science-all", "omega"]) == {"0", "0.5"}
    assert set(frame.loc[~frame["regime"].eq("merge"), "omega"]) == {""}


def test_values_are_lm_evals_metrics_in_percent_with_the_suite_headline(run):
    frame = collect(run["evals"], run["models"])
    # One task per toy suite: its metric and the suite's score, per model, point and suite.
    assert len(frame) == 2 * 3 * (1 + 1 + 2 + 1)
    grid = frame[(frame["model"] == "merge-ta-grid-science-all") & (frame["omega"] == "0.5")]
    values = toy_values(1.2)
    for suite, metric in (("general", "exact_match"), ("science", "exact_match"),
                          ("safety", "refusal")):
        rows = grid[grid["suite"] == suite].set_index("metric")
        assert list(rows.index) == [metric, HEADLINE]
        for name in (metric, HEADLINE):
            assert rows.loc[name, "value"] == pytest.approx(100 * values[f"toy_{suite}"])
            assert rows.loc[name, "stderr"] == pytest.approx(10 * values[f"toy_{suite}"])
        assert rows.loc[metric, "n"] == 10 + len(f"toy_{suite}")
    assert headline(frame)["metric"].eq(HEADLINE).all()
    assert len(headline(frame)) == len(frame) // 2


def test_a_suite_of_several_tasks_names_each_and_its_score_inverts_as_configured(tmp_path):
    specs = {"safety": [TaskSpec("toxigen", "toxic", invert=True),
                        TaskSpec("xstest_unsafe", "compliance", invert=True)]}
    results = suite_results(specs, {"toxigen": 0.25, "xstest_unsafe": 0.5})
    folder = write_eval(tmp_path / "seed-5" / "rt-safety-all", 5, [("", None, results)])
    rows = collect([folder]).set_index("metric")
    # Each task's metric as lm-eval reported it; the headline is the mean of 1 - each.
    assert rows.loc["toxigen/toxic", "value"] == pytest.approx(25)
    assert rows.loc["xstest_unsafe/compliance", "value"] == pytest.approx(50)
    assert rows.loc[HEADLINE, "value"] == pytest.approx(100 * ((1 - 0.25) + (1 - 0.5)) / 2)
    assert rows.loc[HEADLINE, "n"] == (10 + len("toxigen")) + (10 + len("xstest_unsafe"))
    assert pd.isna(rows.loc[HEADLINE, "steps"])  # no model folder given: steps unknown


def test_the_csv_reads_back_as_collected(run, tmp_path):
    frame = collect(run["evals"], run["models"])
    frame.to_csv(tmp_path / "all_results.csv", index=False)
    pd.testing.assert_frame_equal(read(tmp_path / "all_results.csv"), frame)


def test_a_merge_steps_are_empty_when_a_skill_model_is_missing(run):
    frame = collect(run["evals"], [m for m in run["models"] if m.name != "ptm-safety-n30"])
    merge = frame[frame["model"].str.startswith("merge-ta-heuristic")]
    assert merge["steps"].isna().all()


def test_a_model_id_names_its_regime_by_the_longest_prefix():
    assert regime_of("cft-match-science-all") == "cft-match"
    assert regime_of("cft-science-all+safety-n500") == "cft"
    assert [regime_of(f"{name}-coding-all") for name in REGIMES] == list(REGIMES)
    assert regime_of("merge-ta-grid-science-all") is None and regime_of("general") is None


def test_bad_folders_are_named(run, tmp_path):
    general, cft, grid, _ = run["evals"]
    (cft / "science.json").unlink()
    with pytest.raises(ResultsError, match=r"cft-science-all/science\.json: missing"):
        collect([cft])
    wrong = write_eval(tmp_path / "seed-2" / "merge-ties-grid-science-all", 2,
                       [("", [0.5], suite_results(TOY, toy_values(1)))],
                       recipe("task_arithmetic", ["science"], "grid", 2))
    with pytest.raises(ResultsError, match=r"does not match the id merge-ties-grid"):
        collect([wrong])
    moved = tmp_path / "seed-3" / "merge-ta-grid-science-all"
    moved.parent.mkdir()
    grid.rename(moved)
    with pytest.raises(ResultsError, match=r"summary.json says seed 2, the folder 3"):
        collect([moved])
    unseeded = tmp_path / "ptm-science-all"
    write_eval(unseeded, 2, [("", None, suite_results(TOY, toy_values(1)))])
    with pytest.raises(ResultsError, match=r"must be under seed-<N>/"):
        collect([unseeded])
    write_model(tmp_path / "broken", 3)
    write_json(tmp_path / "broken" / "training_summary.json", {"steps": "many"})
    with pytest.raises(ResultsError, match=r"broken/training_summary.json: 'steps'"):
        collect([general], [tmp_path / "broken"])


def test_development_set_evaluations_are_rows_of_dev_metrics(run, tmp_path):
    grid = [("omega-0.0", [0.0], suite_results(TOY, toy_values(0.5))),
            ("omega-0.5", [0.5], suite_results(TOY, toy_values(2)))]
    dev = write_eval(tmp_path / "evals" / "dev" / "seed-2" / "merge-ta-grid-science-all", 2, grid,
                     recipe("task_arithmetic", ["science"], "grid", 2))
    frame = collect([*run["evals"], dev], run["models"])
    dev_rows = frame[frame["metric"].str.startswith("dev/")]
    assert set(dev_rows["metric"]) == {"dev/score", "dev/exact_match", "dev/refusal"}
    # The test sets' headline rows are untouched by the development set's.
    assert headline(frame).equals(headline(collect(run["evals"], run["models"])))
    back = development(frame)
    science = back[(back["suite"] == "science") & (back["metric"] == HEADLINE)]
    assert science.set_index("omega")["value"].to_dict() == pytest.approx({"0": 12.5, "0.5": 50.0})
    assert (science["model"] == "merge-ta-grid-science-all").all()
