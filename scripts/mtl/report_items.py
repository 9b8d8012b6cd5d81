"""The report's tables and figures, one entry each: what an item reads, the function that
computes it, its plot and its caption.

An item reads evaluations and trained models, named by their ids under a seed's folder
(mtl.targets) and derived from the config's `Plan`; its function turns the long results table
(mtl.results.collect over those folders) into the item's CSV; a table's cells are noted in its
provenance record (`mtl-audit --cells`). Its caption is report/<name>.rst, and its rule, named
after it, comes from the loop over REPORT_ITEMS in rules/tables.smk; one step program,
scripts/report_item.py, serves every item. A new table is one function and one entry here,
plus its caption.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mtl import figures, tables
from mtl.io import write_csv
from mtl.merge import METHODS
from mtl.merge.recipe import COMPARABLE
from mtl.provenance import Step
from mtl.targets import Pair, merge_id, skillset_id, trained_ids

Params = Mapping[str, Any]  # the rule's params: suites, skills, seeds, method, the item's own


@dataclass(frozen=True)
class Plan:
    """What the items' inputs and params derive from: the config's skills in paper order, each
    with its data sizes (the first is the size every item but Table 2 uses), the table method's
    tag (the config's merge method), DARE's density and the methods the comparison shows."""

    sizes: Mapping[str, Sequence[str]]
    method: str
    density: float
    # The methods Table 6 and Figure 3 compare, by registry name (mtl.merge.compared_methods).
    compared: Sequence[str] = COMPARABLE

    def pairs(self, skills: Iterable[str] | None = None) -> list[Pair]:
        """(skill, first size) of every skill, or of those of `skills` the config has."""
        wanted = list(self.sizes) if skills is None else list(skills)
        return [(skill, self.sizes[skill][0]) for skill in self.sizes if skill in wanted]


@dataclass(frozen=True)
class Reads:
    """Evaluation and trained-model ids an item reads under each seed's folder (the models'
    training records give the steps); θ_G's evaluation and model are read besides."""

    evals: list[str]
    models: list[str] = field(default_factory=list)
    # Evaluations also read on the development sets (where the config has them): Table 3's
    # held-out ω is chosen there.
    dev: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportItem:
    """One table or figure: results/<name>.csv (and results/figures/<name>.png with a plot).

    `reads` the ids it needs under the config's plan; `make` computes the CSV from the results
    table and the rule's params; `plot` draws it (data, results, params, path); `params` are the
    item's own params beside the shared ones; `needs` a skill without which the config cannot make
    it; `config_keys` the config its provenance record keeps; `cells` the label columns of a
    table whose score cells are noted (None for a figure's data); `notes` records more cells.
    """

    name: str
    reads: Callable[[Plan], Reads]
    make: Callable[[pd.DataFrame, Params], pd.DataFrame]
    plot: Callable[[pd.DataFrame, pd.DataFrame, Params, str], None] | None = None
    params: Callable[[Plan], dict[str, Any]] = lambda plan: {}
    needs: str | None = None
    config_keys: tuple[str, ...] = ("seeds", "evaluation", "merge")
    cells: tuple[str, ...] | None = ("model",)
    notes: Callable[[pd.DataFrame, Step, list[str], Params], None] | None = None

    def write(self, data: pd.DataFrame, path: str, *, step: Step, evals: list[str],
              params: Params) -> None:
        """The CSV at `path`; a table's cells (and any further `notes`) in `step`'s record."""
        if self.cells is None:
            write_csv(data, path)
            return
        tables.write_table(data, path, step=step, evals=evals, label_columns=self.cells)
        if self.notes:
            self.notes(data, step, evals, params)


def tag(name: str) -> str:
    """A merge method's tag in targets, by its registry name."""
    return METHODS[name].tag


def _both_weightings(method: str, pairs: Iterable[Pair]) -> list[str]:
    """Each skill alone merged at the heuristic ω and over the grid."""
    return [merge_id(method, w, [pair]) for pair in pairs for w in ("heuristic", "grid")]


def _grids(names: Sequence[str], pairs: Iterable[Pair]) -> list[str]:
    """One-skill ω sweeps of each method (by registry name), per skill."""
    return [merge_id(tag(name), "grid", [pair]) for pair in pairs for name in names]


def _together(plan: Plan) -> list[str]:
    """CFT and RT trained on every skill's data at once (Table 4's)."""
    together = skillset_id(plan.pairs())
    return [f"cft-{together}", f"rt-{together}"]


def _ptm(plan: Plan) -> list[str]:
    """The θ_D the merges are made from (their steps are a merge's cost)."""
    return trained_ids(["ptm"], plan.pairs())


def _figure(plot: Callable[[pd.DataFrame, str], None]):
    """A plot of the item's own data alone."""
    return lambda data, _results, _params, path: plot(data, path)


def _omega_cells(table: pd.DataFrame, step: Step, evals: list[str], params: Params) -> None:
    """Each ω comes from the merge's recorded point (its summary.json), every seed's."""
    for _, row in table.iterrows():
        for skill in params["skills"]:
            if row[f"omega_{skill}"] == row[f"omega_{skill}"]:  # not NaN: the skill is merged
                folders = [f for f in evals if f.rstrip("/").endswith("/" + row["source"])]
                step.note_cell(row["model"], f"omega_{skill}",
                               [f"{folder}/summary.json" for folder in folders],
                               config=["merge.method"])


# ---- the items ---------------------------------------------------------------------------------

TABLE2_SKILL = "science"  # the paper's Table 2 sweeps science's data size
# Figure 2 (the paper's is science): WiSE-FT from θ_CFT on D against θ_CFT on D + as much G.
FIGURE2_SKILLS = ("science",)
FIGURE2_METHODS = ("wise_ft", "wise_ft_match")
# Figures 3 and 4: the three PTM-style methods along ω (figure 4: safety, General vs ExRef).
SWEEP_METHODS = ("task_arithmetic", "linear", "wise_ft")


def _alone(plan: Plan) -> list[str]:
    """Each compared method's merge of each skill alone at the heuristic ω."""
    return [merge_id(tag(name), "heuristic", [pair])
            for pair in plan.pairs() for name in plan.compared]


def _comparison(plan: Plan) -> list[str]:
    """Each compared method's merge at the heuristic ω: all skills (methods of any number of
    skills), then each skill alone."""
    return [merge_id(tag(name), "heuristic", plan.pairs()) for name in plan.compared
            if METHODS[name].n_skills is None] + _alone(plan)


def _table2_reads(plan: Plan) -> Reads:
    pairs = [(TABLE2_SKILL, size) for size in plan.sizes[TABLE2_SKILL]]
    trained = trained_ids(["cft", "rt"], pairs)
    return Reads(trained + _both_weightings(plan.method, pairs),
                 trained_ids(["cft", "rt", "ptm"], pairs))


def _table3_reads(plan: Plan) -> Reads:
    trained = trained_ids(["cft", "rt"], plan.pairs())
    return Reads(trained + _both_weightings(plan.method, plan.pairs()), trained + _ptm(plan),
                 dev=[merge_id(plan.method, "grid", [pair]) for pair in plan.pairs()])


def _table5_reads(plan: Plan) -> Reads:
    """Each skill alone, every pair, and all skills, at the heuristic ω."""
    pairs = plan.pairs()
    combos = [c for k in range(1, len(pairs) + 1) for c in itertools.combinations(pairs, k)]
    return Reads([merge_id(plan.method, "heuristic", combo) for combo in combos], _ptm(plan))


def _figure1_reads(plan: Plan) -> Reads:
    """The table method's ω sweep per skill, and the heuristic merge it marks."""
    pairs = plan.pairs()
    return Reads([merge_id(plan.method, "grid", [p]) for p in pairs]
                  + [merge_id(plan.method, "heuristic", [p]) for p in pairs])


def _figure5_reads(plan: Plan) -> Reads:
    """Every model trained on safety data: CFT, RT (safety alone and all skills) and PTM (the
    heuristic ω and the grid, safety alone and the all-skill merge)."""
    safety = plan.pairs(["safety"])
    trained = trained_ids(["cft", "rt"], safety) + _together(plan)
    merges = [merge_id(plan.method, w, safety) for w in ("heuristic", "grid")]
    merges.append(merge_id(plan.method, "heuristic", plan.pairs()))
    return Reads(trained + merges, trained + _ptm(plan))


def _figure2_data(results: pd.DataFrame, params: Params) -> pd.DataFrame:
    skills = [s for s in FIGURE2_SKILLS if s in params["skills"]]
    variants = {t: figures.WISEFT_VARIANTS.get(t, t) for t in params["methods"]}
    return figures.figure2(results, skills, variants)


def _sweep_params(plan: Plan) -> dict[str, Any]:
    return {"methods": [tag(name) for name in SWEEP_METHODS]}


_ITEMS = [
    ReportItem(
        "table2",
        reads=_table2_reads,
        make=lambda results, p: tables.table2(results, TABLE2_SKILL, method=p["method"]),
        plot=lambda table, results, p, path: figures.plot_table2(
            table, figures.table2_points(results, TABLE2_SKILL, p["method"]), TABLE2_SKILL,
            path),
        params=lambda plan: {"sizes": list(plan.sizes.get(TABLE2_SKILL, []))},
        needs=TABLE2_SKILL,
        config_keys=("seeds", "evaluation", "merge", "data"),
    ),
    ReportItem(
        "table3",
        reads=_table3_reads,
        make=lambda results, p: tables.table3(results, p["skills"], method=p["method"]),
        plot=lambda table, results, p, path: figures.plot_table3(
            table, figures.figure1(results, p["skills"], p["method"]), path),
        config_keys=("seeds", "evaluation", "merge", "training"),
        cells=("skill", "procedure"),
    ),
    ReportItem(
        "table4",
        reads=lambda plan: Reads(
            [merge_id(plan.method, "heuristic", plan.pairs()), *_together(plan)],
            [*_together(plan), *_ptm(plan)]),
        make=lambda results, p: tables.table4(results, p["skills"], method=p["method"]),
    ),
    ReportItem(
        "table5",
        reads=_table5_reads,
        make=lambda results, p: tables.table5(results, p["skills"], method=p["method"]),
        notes=_omega_cells,
    ),
    ReportItem(
        "table6",
        reads=lambda plan: Reads(_comparison(plan), _ptm(plan)),
        make=lambda results, p: tables.table6(results, p["skills"], methods=p["methods"],
                                              density=p.get("density")),
        params=lambda plan: {"methods": [tag(name) for name in plan.compared],
                             "density": plan.density},
        cells=("merge", "model"),
    ),
    ReportItem(
        "figure1",
        reads=_figure1_reads,
        make=lambda results, p: figures.figure1(results, p["skills"], p["method"]),
        plot=_figure(figures.plot_figure1),
        config_keys=("seeds", "merge"),
        cells=None,
    ),
    ReportItem(
        "figure2",
        reads=lambda plan: Reads(
            _grids(FIGURE2_METHODS, plan.pairs(FIGURE2_SKILLS)),
            trained_ids(["cft", "cft-match"], plan.pairs(FIGURE2_SKILLS))),
        make=_figure2_data,
        plot=_figure(figures.plot_figure2),
        params=lambda plan: {"methods": [tag(name) for name in FIGURE2_METHODS]},
        needs=FIGURE2_SKILLS[0],
        config_keys=("seeds", "merge"),
        cells=None,
    ),
    ReportItem(
        "figure3",
        reads=lambda plan: Reads(_grids(SWEEP_METHODS, plan.pairs()) + _alone(plan)),
        make=lambda results, p: figures.figure3(results, p["skills"], p["methods"],
                                                p["compared"]),
        plot=_figure(figures.plot_figure3),
        params=lambda plan: {**_sweep_params(plan),
                             "compared": [tag(name) for name in plan.compared]},
        config_keys=("seeds", "merge"),
        cells=None,
    ),
    ReportItem(
        "figure4",
        reads=lambda plan: Reads(_grids(SWEEP_METHODS, plan.pairs(["safety"]))),
        make=lambda results, p: figures.figure4(results, p["methods"]),
        plot=_figure(figures.plot_figure4),
        params=_sweep_params,
        needs="safety",
        config_keys=("seeds", "merge"),
        cells=None,
    ),
    ReportItem(
        "figure5",
        reads=_figure5_reads,
        make=lambda results, p: figures.figure5(results, p["method"]),
        plot=_figure(figures.plot_figure5),
        needs="safety",
        config_keys=("seeds", "merge"),
        cells=None,
    ),
]
REPORT_ITEMS: dict[str, ReportItem] = {item.name: item for item in _ITEMS}


def available(skills: Iterable[str]) -> list[ReportItem]:
    """The items a config with `skills` can make: those whose needed skill it has."""
    have = list(skills)
    return [item for item in _ITEMS if (item.needs or have[0]) in have]

