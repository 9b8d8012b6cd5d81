"""The report's tables and figures, one entry each: what an item reads, the function that
computes it, its plot and its caption.

An item reads evaluations and trained models, named by their ids under a seed's folder
(mtl.targets) and derived from the config's `Plan`; its function turns the long results table
(mtl.results.collect over those folders) into the item's CSV; a table's cells are noted in its
provenance record (`mtl-audit --cells`). Its caption in the HTML report is report/item.rst with
the entry's `Caption`; its rule, named after it, comes from the loop over REPORT_ITEMS in
rules/tables.smk; one step program, scripts/report_item.py, serves every item. A new table is
one function and one entry here (what an entry holds: mtl.report_types).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from mtl import figures, tables
from mtl.merge import METHODS
from mtl.provenance import Step
from mtl.report_types import Caption, Params, Plan, Reads, ReportItem
from mtl.targets import Pair, merge_id, skillset_id, trained_ids


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
        caption=Caption(
            r"""
            **Table 2: science across data sizes.** θ_G (the general model), and the best CFT (θ_G
            trained further on science data), the best RT (θ_pre retrained on the general mix plus
            the science data) and the best PTM (θ_G + ω·τ_science, τ = θ_D − θ_pre) over the
            configured science data sizes, each with the size and ω it was found at and the
            optimizer steps it trained: the paper's cost comparison (PTM trains on the skill data
            alone; RT trains on everything again). Scores in percent: General, Science (and the
            other suites).
            """,
            choice=r"""
            Each "best" row is chosen as the paper chose it, over the science data sizes (and, for
            PTM, over the ω grid too); the table's ``notes`` say exactly how, and on which numbers.
            """,
            steps=True,
            config='science sizes {{ snakemake.config["data"]["skills"]["science"]["sizes"]'
            '|join(", ") }}',
        ),
    ),
    ReportItem(
        "table3",
        reads=_table3_reads,
        make=lambda results, p: tables.table3(results, p["skills"], method=p["method"]),
        plot=lambda table, results, p, path: figures.plot_table3(
            table, figures.figure1(results, p["skills"], p["method"]), path),
        config_keys=("seeds", "evaluation", "merge", "training"),
        cells=("skill", "procedure"),
        caption=Caption(
            r"""
            **Table 3: adding one skill by CFT, RT or PTM, against θ_G.** One block of rows per
            skill (the first data size of each): θ_G (the general model, the baseline); CFT (θ_G
            trained further on the skill data D); RT (θ_pre retrained on the general mix G ∪ D); PTM
            at the heuristic ω = \|D\|/\|G\|, PTM at the ω chosen on the skill's development set
            (where the config has one; its test scores) and PTM at the best ω of the grid (θ_G +
            ω·τ_D, τ_D = θ_D − θ_pre). Columns: General, the skill's score and ExRef in percent,
            their percent change against θ_G (as the paper's Table 3 reports it), and the
            optimizer steps each procedure trained (PTM: those of θ_D).

            ``table3.csv`` is the table; ``table3.png`` plots General against the skill score for
            each procedure, one panel per skill, with PTM's path along the ω grid.
            """,
            choice=r"""
            "PTM best ω" is the grid point with the highest skill score on the test set itself (an
            upper bound on tuning), "PTM held-out ω" the one with the highest score on the
            development set; the smallest ω among ties; the table's ``notes`` say on which numbers
            each was picked.
            """,
            steps=True,
        ),
    ),
    ReportItem(
        "table4",
        reads=lambda plan: Reads(
            [merge_id(plan.method, "heuristic", plan.pairs()), *_together(plan)],
            [*_together(plan), *_ptm(plan)]),
        make=lambda results, p: tables.table4(results, p["skills"], method=p["method"]),
        caption=Caption(
            r"""
            **Table 4: all three skills at once.** θ_G; PTM, the three-skill task-arithmetic merge
            θ_G + Σ_k ω_k·τ_k at the heuristic ω_k = \|D_k\|/\|G\|; CFT (θ_G trained further on D1 ∪
            D2 ∪ D3); RT (θ_pre retrained on G ∪ D1 ∪ D2 ∪ D3). Columns: General, Science, Safety,
            Coding and ExRef (compliance on safe prompts that look unsafe: exaggerated refusals), in
            percent, with the ω of each skill and the training steps.
            """,
            steps=True,
        ),
    ),
    ReportItem(
        "table5",
        reads=_table5_reads,
        make=lambda results, p: tables.table5(results, p["skills"], method=p["method"]),
        notes=_omega_cells,
        caption=Caption(
            r"""
            **Table 5: merging skills at the heuristic ω.** θ_G, then each skill alone, every pair,
            and all skills merged with the config's merge method (task arithmetic: θ_G + Σ_k
            ω_k·τ_k), each ω_k = \|D_k\|/\|G\| (the paper's heuristic, no held-out data): the
            ``omega_<skill>`` columns, empty where a skill is not merged. Columns: every suite's
            score in percent; the pairs show how skills interfere.
            """,
        ),
    ),
    ReportItem(
        "table6",
        reads=lambda plan: Reads(_comparison(plan), _ptm(plan)),
        make=lambda results, p: tables.table6(results, p["skills"], methods=p["methods"],
                                              density=p.get("density")),
        params=lambda plan: {"methods": [tag(name) for name in plan.compared],
                             "density": plan.density},
        cells=("merge", "model"),
        caption=Caption(
            r"""
            **Table 6: merge methods compared.** Each method of ``merge.compare`` at the heuristic
            ω = \|D_k\|/\|G\|: first the merge of every skill (methods that merge any number),
            then each skill alone (``merge``). The paper's appendix compares task arithmetic with
            TIES (trim to the largest entries, elect a sign, merge those that agree) and DARE (drop
            each task-vector entry with probability 1 − density, rescale the survivors) at density
            0.5; the engine's other methods are in docs/merge-engine.md. Columns: every suite's
            score in percent, the ω of each skill.
            """,
            config='density {{ snakemake.config["merge"]["density"] }}',
        ),
    ),
    ReportItem(
        "figure1",
        reads=_figure1_reads,
        make=lambda results, p: figures.figure1(results, p["skills"], p["method"]),
        plot=_figure(figures.plot_figure1),
        config_keys=("seeds", "merge"),
        cells=None,
        caption=Caption(
            r"""
            **Figure 1: General against each skill along the ω grid.** One panel per skill: task
            arithmetic θ_G + ω·τ_skill at every ω of the grid, the General and skill scores in
            percent (the line is the mean over seeds, the band the spread over seeds), the heuristic
            ω = \|D\|/\|G\| marked. ``figure1.png`` is the plot; ``figure1.csv`` every plotted
            number, one row per skill and ω (with θ_G's scores as the baseline columns).
            """,
        ),
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
        caption=Caption(
            r"""
            **Figure 2: WiSE-FT with all of D against D plus matching general data.** Per skill (the
            paper shows science): WiSE-FT, (1 − ω)·θ_G + ω·θ_CFT, along the ω grid, once with θ_CFT
            trained on the skill data alone (``cft``) and once on the skill data plus as many
            general examples (``cft-match``). General against the skill score, in percent, mean over
            seeds with the spread. ``figure2.png`` is the plot; ``figure2.csv`` every plotted
            number.
            """,
        ),
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
        caption=Caption(
            r"""
            **Figure 3: the ways to merge one skill.** Per skill, along the ω grid (lines): task
            arithmetic θ_G + ω·τ_D, linear interpolation (1 − ω)·θ_G + ω·θ_D and WiSE-FT (1 − ω)·θ_G
            + ω·θ_CFT; and each method of ``merge.compare`` merging the skill alone at the heuristic
            ω (markers, as in Table 6). General against the skill score in percent, mean over seeds
            with the spread. ``figure3.png`` is the plot; ``figure3.csv`` every plotted number
            (``kind``: grid or heuristic).
            """,
        ),
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
        caption=Caption(
            r"""
            **Figure 4: General against exaggerated refusals, along the safety ω grid.** For each
            merge method, the safety merge at every ω of the grid: General score against ExRef
            (compliance on safe prompts that look unsafe; lower means more exaggerated refusals), in
            percent, mean over seeds with the spread. ``figure4.png`` is the plot; ``figure4.csv``
            every plotted number.
            """,
        ),
    ),
    ReportItem(
        "figure5",
        reads=_figure5_reads,
        make=lambda results, p: figures.figure5(results, p["method"]),
        plot=_figure(figures.plot_figure5),
        needs="safety",
        config_keys=("seeds", "merge"),
        cells=None,
        caption=Caption(
            r"""
            **Figure 5: General against exaggerated refusals, every safety-trained model.** Each
            model trained on safety data (CFT, RT and PTM points) at General against ExRef
            (compliance on safe prompts that look unsafe), in percent, mean over seeds with the
            spread: whether adding safety makes the model refuse what it should answer.
            ``figure5.png`` is the plot; ``figure5.csv`` every plotted number.
            """,
        ),
    ),
]
REPORT_ITEMS: dict[str, ReportItem] = {item.name: item for item in _ITEMS}


def available(skills: Iterable[str]) -> list[ReportItem]:
    """The items a config with `skills` can make: those whose needed skill it has."""
    have = list(skills)
    return [item for item in _ITEMS if (item.needs or have[0]) in have]

