"""Every evaluation as one long table: results/all_results.csv, the frame the tables are cut from.

One row per (evaluated model or merge point, seed, suite, metric), with what was evaluated
(regime, merge method and weighting, skills and sizes, ω) and what its training cost (steps).
Everything is read from the evaluation folders (summary.json, one JSON per suite and point) and
the trained model folders (training_summary.json), never from a table.

Metrics of a suite: each task's metric as lm-eval reports it (its name without lm-eval's
default filter ",none"; prefixed "<task>/" when the suite has several tasks), and the suite's
headline, metric `score` (HEADLINE): the mean of its tasks' metrics, those the config inverts
inverted, exactly as the evaluation computed it. At toy scale every suite has one task and its
`score` is that task's metric (SUITES[suite].toy_metric); at paper scale it is the suite's
number in the paper's tables (e.g. Safety = mean of 1 − toxic, 1 − attack success, 1 − unsafe
compliance). The tables read the headline rows (`headline`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtl.io import read_json_object
from mtl.merge import METHODS
from mtl.regimes import regime_of
from mtl.suites import SKILLS

COLUMNS = [
    "model",
    "seed",
    "regime",
    "method",
    "weighting",
    "skills",
    "size",
    "omega",
    "steps",
    "suite",
    "metric",
    "value",
    "stderr",
    "n",
]
TEXT = ["model", "regime", "method", "weighting", "skills", "size", "omega", "suite", "metric"]
INTEGERS = ["seed", "steps", "n"]
HEADLINE = "score"
# Evaluations on the development sets sit in a `dev` folder above their seed folder
# (results/evals/dev/seed-<N>/<id>); their rows' metrics carry this prefix ("dev/score"), so
# everything that reads the test sets' headline rows leaves them out.
DEV = "dev"
DEV_PREFIX = f"{DEV}/"
SHARED = ("pretrained", "general")


class ResultsError(ValueError):
    """An evaluation or model folder that cannot be read into the results table."""


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, lambda reason: ResultsError(f"{path}: {reason}"))


def _seed_folder(folder: Path) -> int | None:
    """N of a seeded artifact results/<kind>/seed-<N>/<id>; None for a shared one."""
    parent = folder.parent.name
    if parent.startswith("seed-") and parent[5:].isdigit():
        return int(parent[5:])
    return None


def _skillset(text: str, where: Path) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split("+"):
        skill, sep, size = part.rpartition("-")
        if not sep or not skill or not size:
            raise ResultsError(f"{where}: {part!r} in {text!r} is not <skill>-<size>")
        pairs.append((skill, size))
    return pairs


def _paper_order(pairs: list[tuple[str, str]]) -> list[int]:
    """Indices of `pairs` in the paper's skill order (science, safety, coding), others after."""
    rank = {skill: i for i, skill in enumerate(SKILLS)}
    return sorted(range(len(pairs)), key=lambda i: (rank.get(pairs[i][0], len(rank)), i))


def describe(model: str, recipe: dict[str, Any] | None, where: Path) -> dict[str, Any]:
    """regime, method, weighting and the (skill, size) pairs of evaluation id `model`,
    checked against the merge recipe its summary.json recorded."""
    if model in SHARED:
        if recipe is not None:
            raise ResultsError(f"{where}: {model} is not a merge but has a recipe")
        return {"regime": model, "method": "", "weighting": "", "pairs": []}
    if model.startswith("merge-"):
        tag, _, rest = model.removeprefix("merge-").partition("-")
        weighting, _, skillset = rest.partition("-")
        if recipe is None:
            raise ResultsError(f"{where}: merge {model} has no recipe in summary.json")
        method = METHODS.get(recipe.get("method", ""))
        if method is None or method.tag != tag or recipe.get("weighting") != weighting:
            raise ResultsError(
                f"{where}: recipe {recipe.get('method')!r}/{recipe.get('weighting')!r} does not"
                f" match the id {model} (tag {tag!r}, weighting {weighting!r})"
            )
        pairs = _skillset(skillset, where)
        if [s for s, _ in pairs] != list(recipe.get("skills", [])):
            raise ResultsError(
                f"{where}: recipe skills {recipe.get('skills')} differ from the id's {pairs}"
            )
        return {"regime": "merge", "method": tag, "weighting": weighting, "pairs": pairs}
    regime = regime_of(model)
    if regime is None:
        raise ResultsError(
            f"{where}: {model!r} is not pretrained, general, <regime>-<skills> or merge-…"
        )
    pairs = _skillset(model.removeprefix(f"{regime}-"), where)
    return {"regime": regime, "method": "", "weighting": "", "pairs": pairs}


def training_steps(folder: str | Path) -> int | None:
    """Optimizer steps from a trained model's training_summary.json; None when the folder was
    not trained here (a fetched base model)."""
    path = Path(folder) / "training_summary.json"
    if not path.exists():
        return None
    steps = _read_json(path).get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ResultsError(f"{path}: 'steps' must be a non-negative integer, got {steps!r}")
    return steps


def _models(models: Iterable[str | Path]) -> dict[tuple[int | None, str], int | None]:
    """{(seed or None for shared, model id): steps}."""
    return {(_seed_folder(Path(m)), Path(m).name): training_steps(m) for m in models}


def _steps(
    info: dict[str, Any], model: str, seed: int | None, recipe: dict[str, Any] | None,
    steps: dict[tuple[int | None, str], int | None],
) -> int | None:
    """A model's own steps; a merge's, the sum over the skill models it is made from."""
    if info["regime"] == "merge":
        regime = METHODS[recipe["method"]].skill_regime  # type: ignore[index]
        parts = [steps.get((seed, f"{regime}-{s}-{z}")) for s, z in info["pairs"]]
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]
    return steps.get((None if model in SHARED else seed, model))


def _percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return 100.0 * float(value)


def _metric_name(key: str) -> str:
    name, _, filtered = key.partition(",")
    return name if filtered in ("", "none") else key


def _suite_rows(path: Path, suite: str) -> list[dict[str, Any]]:
    """The rows of one suite's JSON: each task's reported metric, then the suite's score."""
    data = _read_json(path)
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks or "score" not in data:
        raise ResultsError(f"{path}: expected 'score' and per-task 'tasks' (a suite result)")
    rows = []
    for task, head in tasks.items():
        key = head.get("metric")
        raw = data.get("lm_eval", {}).get(task, {}).get("results", {}).get(task, {})
        if not isinstance(key, str) or key not in raw:
            raise ResultsError(f"{path}: task {task}: metric {key!r} not in lm-eval's results")
        name = _metric_name(key)
        rows.append({
            "metric": name if len(tasks) == 1 else f"{task}/{name}",
            "value": _percent(raw[key]),
            "stderr": _percent(raw.get(key.replace(",", "_stderr,", 1))),
            "n": head.get("n"),
        })
    counts = [row["n"] for row in rows]
    rows.append({
        "metric": HEADLINE,
        "value": _percent(data["score"]),
        "stderr": _percent(data.get("stderr")),
        "n": None if any(c is None for c in counts) else sum(counts),
    })
    return [{"suite": suite, **row} for row in rows]


def _omega_text(omega: Sequence[float] | None, order: list[int]) -> str:
    if omega is None:
        return ""
    return "+".join(f"{float(omega[i]):.6g}" for i in order)


def _eval_rows(
    folder: Path, steps: dict[tuple[int | None, str], int | None]
) -> list[dict[str, Any]]:
    summary = _read_json(folder / "summary.json")
    model = folder.name
    recipe = summary.get("recipe")
    info = describe(model, recipe, folder / "summary.json")
    seed = _seed_folder(folder)
    recorded = summary.get("seed")
    if seed is None and model not in SHARED:
        raise ResultsError(f"{folder}: a trained model or merge must be under seed-<N>/")
    if seed is not None and recorded is not None and recorded != seed:
        raise ResultsError(f"{folder}: summary.json says seed {recorded}, the folder {seed}")
    if seed is None:
        if not isinstance(recorded, int):
            raise ResultsError(f"{folder / 'summary.json'}: no 'seed' recorded")
        seed = recorded
    order = _paper_order(info["pairs"])
    prefix = DEV_PREFIX if folder.parent.parent.name == DEV else ""
    base = {
        "model": model,
        "seed": seed,
        "regime": info["regime"],
        "method": info["method"],
        "weighting": info["weighting"],
        "skills": "+".join(info["pairs"][i][0] for i in order),
        "size": "+".join(info["pairs"][i][1] for i in order),
        "steps": _steps(info, model, _seed_folder(folder), recipe, steps),
    }
    points = summary.get("points")
    if not isinstance(points, list) or not points:
        raise ResultsError(f"{folder / 'summary.json'}: no evaluated points")
    rows = []
    for point in points:
        where = folder / (point.get("point") or "")
        if info["regime"] == "merge" and point.get("omega") is None:
            raise ResultsError(f"{where}: a merge point without its ω")
        omega = _omega_text(point.get("omega"), order)
        for suite in point.get("scores", {}):
            for row in _suite_rows(where / f"{suite}.json", suite):
                rows.append({**base, "omega": omega, **row, "metric": prefix + row["metric"]})
    return rows


def collect(evals: Iterable[str | Path], models: Iterable[str | Path] = ()) -> pd.DataFrame:
    """The results table (COLUMNS) of evaluation folders; `models`: the trained model folders
    whose steps the rows carry (a merge's are the sum over the skill models it merges)."""
    steps = _models(models)
    rows = [row for folder in evals for row in _eval_rows(Path(folder), steps)]
    return typed(pd.DataFrame(rows, columns=COLUMNS))


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """COLUMNS with their types: text ('' when empty), nullable integers, float percents."""
    frame = frame[COLUMNS].copy()
    for column in TEXT:
        frame[column] = frame[column].fillna("").astype(str)
    for column in INTEGERS:
        frame[column] = pd.array(
            [None if pd.isna(v) else int(v) for v in frame[column]], dtype="Int64"
        )
    for column in ("value", "stderr"):
        frame[column] = frame[column].astype(float)
    return frame


def read(path: str | Path) -> pd.DataFrame:
    """results/all_results.csv back as collect() returned it (empty text stays '')."""
    frame = pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=False,
                        na_values={c: [""] for c in ["value", "stderr", *INTEGERS]})
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(missing)}")
    return typed(frame)


def development(frame: pd.DataFrame) -> pd.DataFrame:
    """The development sets' rows, their metrics named as the test sets' ("dev/score" as
    "score"): a frame the tables read as they read the test sets'."""
    rows = frame[frame["metric"].str.startswith(DEV_PREFIX)]
    return rows.assign(metric=rows["metric"].str.removeprefix(DEV_PREFIX)).reset_index(drop=True)


def headline(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the tables report: each suite's headline score per model, seed and point."""
    return frame[frame["metric"] == HEADLINE].reset_index(drop=True)
