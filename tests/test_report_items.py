"""The report items (scripts/mtl/report_items.py): one entry per table or figure, from which the
workflow makes one rule each; and a new table added as one entry (its caption included) is
planned and built by the workflow, with nothing else rerun, and captioned in the HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from workflow import (
    TEST_CONFIG,
    TEST_SEEDS,
    clone_run,
    embedded_results,
    planned_jobs,
    snakemake,
)

from mtl.report_items import REPORT_ITEMS, available
from mtl.report_types import Plan

PAPER_PLAN = Plan(sizes={"science": ["all", "20pct"], "safety": ["all"], "coding": ["all"]},
                  method="ta", density=0.5)


def names(skills: list[str]) -> list[str]:
    return [item.name for item in available(skills)]


def test_items_a_config_can_make_follow_its_skills():
    assert names(["science", "safety", "coding"]) == list(REPORT_ITEMS)
    # Table 2 and Figure 2 are science's, Figures 4 and 5 safety's; the rest take any skill.
    assert names(["coding"]) == ["table3", "table4", "table5", "table6", "figure1", "figure3"]
    assert "figure4" not in names(["science", "coding"])
    assert "table2" not in names(["safety"])


def test_each_item_reads_what_its_table_shows():
    table5 = REPORT_ITEMS["table5"].reads(PAPER_PLAN)
    # Each skill alone, the three pairs and all three: 7 merges at the heuristic ω.
    assert len(table5.evals) == 7 and all("-heuristic-" in e for e in table5.evals)
    assert table5.evals[-1] == "merge-ta-heuristic-science-all+safety-all+coding-all"
    assert table5.models == ["ptm-science-all", "ptm-safety-all", "ptm-coding-all"]
    # Table 2 sweeps every size of science; the others use each skill's first size.
    table2 = REPORT_ITEMS["table2"].reads(PAPER_PLAN)
    assert {"cft-science-20pct", "merge-ta-grid-science-20pct"} <= set(table2.evals)
    assert not any("safety" in e for e in table2.evals)
    figure2 = REPORT_ITEMS["figure2"].reads(PAPER_PLAN)
    assert figure2.models == ["cft-science-all", "cft-match-science-all"]
    # Table 6 compares every method that merges task vectors from θ_pre: all skills at once
    # where the method merges any number of skills (NuSLERP merges one), then each skill alone.
    table6 = REPORT_ITEMS["table6"]
    tags = table6.params(PAPER_PLAN)["methods"]
    assert {"ta", "ties", "dare", "dareties", "tsvm", "isoc", "nuslerp"} <= set(tags)
    assert not {"wiseft", "wiseftmatch"} & set(tags)
    reads = table6.reads(PAPER_PLAN).evals
    assert len(reads) == (len(tags) - 1) + 3 * len(tags)
    assert "merge-nuslerp-heuristic-science-all+safety-all+coding-all" not in reads
    assert "merge-nuslerp-heuristic-coding-all" in reads
    chosen = Plan(PAPER_PLAN.sizes, "ta", 0.5, compared=("ties", "tsv_m"))
    assert table6.params(chosen)["methods"] == ["ties", "tsvm"]
    assert len(table6.reads(chosen).evals) == 2 + 3 * 2
    # Table 3 also reads its method's ω grids on the development sets.
    assert REPORT_ITEMS["table3"].reads(PAPER_PLAN).dev == [
        "merge-ta-grid-science-all", "merge-ta-grid-safety-all", "merge-ta-grid-coding-all"]


def test_every_caption_names_its_item_first():
    for name, item in REPORT_ITEMS.items():
        kind, number = re.fullmatch(r"(table|figure)(\d+)", name).groups()
        assert item.caption.text.strip().startswith(f"**{kind.title()} {number}:"), name


# A new table, as a user adds it: one function and one entry in mtl/report_items.py, its caption
# included. It reads the heuristic-ω merge of each skill alone, which results/table5.csv's DAG
# has already built.
NEW_ITEM = '''

def _merged_alone(results, params):
    """Every point the item reads, averaged over seeds."""
    return tables.results_table(results)


_ITEMS.append(ReportItem(
    "table7",
    reads=lambda plan: Reads([merge_id(plan.method, "heuristic", [p]) for p in plan.pairs()]),
    make=_merged_alone,
    caption=Caption("**Table 7: each skill merged alone.** At the heuristic ω."),
    cells=None,
))
REPORT_ITEMS["table7"] = _ITEMS[-1]
'''


@pytest.mark.slow
def test_a_new_table_is_one_entry_and_the_workflow_builds_it(toy_run, tmp_path):
    run = clone_run(toy_run, tmp_path / "run")
    library = run / "scripts/mtl/report_items.py"
    library.write_text(library.read_text() + NEW_ITEM)

    # Planned as its own rule, named after the item, and nothing else: its inputs are built.
    assert planned_jobs(run, *TEST_CONFIG, "--", "results/table7.csv") == {("table7", "")}
    snakemake(run, "--cores", "2", *TEST_CONFIG, "--", "results/table7.csv")
    table = pd.read_csv(run / "results/table7.csv")
    merged = {f"merge-ta-heuristic-{skill}-all" for skill in ("science", "safety", "coding")}
    assert merged <= set(table["model"]), table["model"].tolist()
    record = json.loads(Path(f"{run}/results/table7.csv.prov.json").read_text())
    assert record["rule"] == "table7"
    seeded = {e["path"] for e in record["inputs"]["evals"]}
    assert {f"results/evals/seed-{seed}/{m}" for seed in TEST_SEEDS for m in merged} <= seeded

    # In the HTML report, captioned by its entry.
    report = tmp_path / "report.html"
    snakemake(run, "--report", str(report), *TEST_CONFIG, "--", "results/table7.csv")
    caption = embedded_results(report)["results/table7.csv"]["caption"]
    assert "Table 7: each skill merged alone." in caption and "At the heuristic ω." in caption
    assert "<tt class=\"docutils literal\">table7</tt>" in caption  # the rule, from report/item.rst
