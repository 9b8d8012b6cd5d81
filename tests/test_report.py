"""`snakemake --report`: every table and figure the workflow builds is in the HTML report with
a caption, and a headless Chromium shows each figure (decoded, at the PNG's own size).

Chromium is required: without it these tests fail, naming the fix (.ci/run installs Debian's
package). MTL_ALLOW_NO_BROWSER=1 turns that failure into a skip, for machines that cannot have
a browser."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import docutils.core
import jinja2
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from snakemake.utils import validate
from workflow import REPO, TEST_CONFIG, embedded_results, snakemake

from mtl.merge.config import merge_config
from mtl.report_items import REPORT_ITEMS

CAPTIONS = REPO / "report"
# The report's tables, figures and files (docs/tables.md): a table's or figure's caption is
# report/item.rst with the text of its entry in mtl.report_items; another file's is
# report/<item>.rst.
ITEMS = [*REPORT_ITEMS, "all_results", "claims"]
CHECK_SCRIPT = Path(__file__).with_name("report_check.js")
CHECK_MARK = '<pre id="mtl-report-check">'
# Chromium as root in a container, on a machine with no network (docs/tables.md, "The HTML report").
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,1000"]


def caption_template(item: str) -> str:
    """The caption Snakemake renders for `item` (rules/common/tables.smk, `item_caption`)."""
    if item in REPORT_ITEMS:
        return REPORT_ITEMS[item].caption_template((CAPTIONS / "item.rst").read_text())
    return (CAPTIONS / f"{item}.rst").read_text()


def title(item: str) -> str:
    """How a table's or figure's caption names it: table5 -> "Table 5"."""
    kind, number = re.fullmatch(r"(table|figure)(\d+)", item).groups()
    return f"{kind.title()} {number}"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    message = ("no headless browser: `apt-get install chromium` (Debian; .ci/run installs it), "
               "or set MTL_ALLOW_NO_BROWSER=1 to skip the report's browser tests")
    if os.environ.get("MTL_ALLOW_NO_BROWSER"):
        pytest.skip(message)
    pytest.fail(message)


# ---- the captions alone (fast) ----------------------------------------------------------------


class _Output(list):
    """A job's output as a caption sees it: positional and by name."""

    def __init__(self, **named: str):
        super().__init__(named.values())
        self.__dict__.update(named)


def _render_caption(text: str, config: dict, artifact: Path) -> str:
    """A caption as Snakemake renders it: Jinja with `snakemake`, then reStructuredText, here
    with every docutils warning raised instead of printed into the page."""
    job = type("Job", (), {"config": config, "rule": "some_rule",
                           "input": ["results/evals/general", "results/evals/ptm-science-all"],
                           "output": _Output(artifact=str(artifact), prov=f"{artifact}.prov.json")})
    rst = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined).from_string(text).render(
        snakemake=job, categories={}, files=[])
    return docutils.core.publish_parts(rst, writer="html",
                                       settings_overrides={"halt_level": 2})["body"]


def _config(*layers: str) -> dict:
    """The config files layered as Snakemake does (nested keys merged), with the schema's
    defaults filled in as the Snakefile's `validate` does (the `merge` section's by the
    method registry, as rules/common.smk does)."""
    def merge(base: dict, top: dict) -> dict:
        for key, value in top.items():
            base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
        return base
    config: dict = {}
    for layer in layers:
        merge(config, yaml.safe_load((REPO / layer).read_text()))
    validate(config, str(REPO / "config/schema.yaml"))
    config["merge"] = merge_config(config["merge"])
    return config


@pytest.mark.parametrize("config", [["config/config.yaml"],
                                    ["config/config.yaml", "config/paper.yaml"]])
@pytest.mark.parametrize("item", ITEMS)
def test_every_caption_renders_with_the_config_it_describes(item, config, tmp_path):
    artifact = tmp_path / f"{item}.csv"
    artifact.write_text("model,General,General_sd,seeds\nθ_G,72.0,,3\nPTM,70.0,1.5,3\n")
    cfg = _config(*config)
    body = _render_caption(caption_template(item), cfg, artifact)
    text = html.unescape(re.sub(r"<[^>]+>", "", body))
    assert "some_rule" in text and "results/evals/ptm-science-all" in text
    assert f"mtl-audit {artifact}" in text
    assert cfg["merge"]["method"] in text
    if item in REPORT_ITEMS:
        entry = REPORT_ITEMS[item]
        assert text.startswith(f"{title(item)}:"), text[:200]  # the entry's own text first
        assert ("records for their optimizer steps" in text) == entry.caption.steps
        shows_table = entry.cells is not None  # a table; a figure's data is a download
    else:
        shows_table = ".. csv-table::" in caption_template(item)
    # The header and both rows of the CSV, or no table.
    assert body.count("<tr>") == (3 if shows_table else 0), body


def test_every_caption_file_is_the_template_or_a_file_of_no_item():
    """A table's or figure's caption is its entry's: no caption file of its own to go stale."""
    others = [item for item in ITEMS if item not in REPORT_ITEMS]
    assert sorted(p.stem for p in CAPTIONS.glob("*.rst")) == sorted([*others, "item", "workflow"])


# ---- the report of a built run, in a browser ------------------------------------------------


def browse(report: Path, workdir: Path) -> dict:
    """What headless Chromium showed of `report`, walked by report_check.js (injected into a
    copy of the page, before </body>)."""
    page = report.read_text()
    cut = page.rindex("</body>")
    checked = workdir / "checked.html"
    checked.write_text(f"{page[:cut]}<script>{CHECK_SCRIPT.read_text()}</script>{page[cut:]}")
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}",
         # Virtual time: the page's timers run as fast as the page can, up to 60 s of them.
         "--virtual-time-budget=60000", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=300)
    assert CHECK_MARK in done.stdout, f"no check output:\n{done.stderr[-3000:]}"
    start = done.stdout.rindex(CHECK_MARK) + len(CHECK_MARK)
    seen = json.loads(html.unescape(done.stdout[start:done.stdout.index("</pre>", start)]))
    assert "error" not in seen, seen
    return seen


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (its IHDR chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


def expected_files(run: Path) -> set[str]:
    """Every table and figure the run built: results/*.csv and results/figures/*.png that
    carry a provenance record (so not results/paper_reference.csv, an input)."""
    found = [*run.glob("results/*.csv"), *run.glob("results/figures/*.png")]
    return {p.relative_to(run).as_posix() for p in found if Path(f"{p}.prov.json").exists()}


def pixel_means(path: Path) -> list[float]:
    """Mean R, G, B and A over the PNG's pixels, decoded by Pillow (matplotlib's own)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"), dtype=float).reshape(-1, 4).mean(axis=0).tolist()


def rendering_problems(seen: dict, run: Path) -> list[str]:
    """What the browser showed wrong, one line per problem: a figure not at its PNG's size, or
    with other pixels than the PNG's (channel means more than half a level apart: what the
    browser's colour handling may round, far below a missing or wrong region)."""
    problems = []
    for result in seen["results"]:
        path = result["path"]
        if result["mime"].startswith("image/"):
            size, means = list(png_size(run / path)), pixel_means(run / path)
            shown = result.get("pixel_means")
            if result.get("natural_size") != size:
                problems.append(f"{path}: shown at {result.get('natural_size')}, the PNG is {size}")
            elif shown is None or np.abs(np.subtract(shown, means)).max() > 0.5:
                problems.append(f"{path}: shown with pixel means {shown}, the PNG's are {means}")
        if not result["caption_text"].strip() or result["caption_errors"]:
            problems.append(f"{path}: caption empty or with reStructuredText errors")
    return problems


@pytest.fixture(scope="module")
def reported_run(full_run, tmp_path_factory) -> tuple[Path, Path]:
    """The test config's default target (every table and figure: the session's `full_run`)
    and its HTML report, written outside the run it reports."""
    report = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(full_run, "--report", str(report), *TEST_CONFIG)
    return full_run, report


@pytest.mark.slow
def test_report_holds_every_table_and_figure_with_its_caption(reported_run):
    run, report = reported_run
    results = embedded_results(report)
    assert set(results) == expected_files(run)
    for path, entry in results.items():
        rule = entry["job_properties"]["rule"]
        assert Path(path).stem == rule, (path, rule)
        assert entry["caption"], path
        if rule in REPORT_ITEMS:
            assert f"{title(rule)}:" in entry["caption"], path
        assert f"<tt class=\"docutils literal\">{rule}</tt>" in entry["caption"], path
        if path.endswith(".png"):
            # Embedded in the page itself, byte for byte: the report is one self-contained file.
            head, _, data = entry["data_uri"].partition(";base64,")
            assert head.startswith("data:image/png;"), (path, head)
            assert base64.b64decode(data) == (run / path).read_bytes(), path


@pytest.mark.slow
def test_report_groups_tables_and_figures_by_paper_item(reported_run):
    _, report = reported_run
    page = report.read_text()
    start = page.index("var categories = ", page.index('<script id="categories">'))
    categories = json.loads(page[start + len("var categories = "):page.index("\n", start)]
                            .strip().removesuffix(";"))
    for category, subcategories in categories.items():
        for subcategory, paths in subcategories.items():
            for path in paths:
                stem = Path(path).stem
                if category == "Summary":
                    assert subcategory == stem.replace("_", " ").capitalize(), (subcategory, path)
                    continue
                kind, _, number = subcategory.partition(" ")
                assert category == f"{kind}s" and stem == f"{kind.lower()}{number}", (
                    category, subcategory, path)


@pytest.mark.slow
def test_chromium_shows_every_figure_and_table_of_the_report(reported_run, tmp_path):
    run, report = reported_run
    chromium()
    seen = browse(report, tmp_path)
    assert "merge-to-learn" in seen["landing_text"]  # the workflow description, report/workflow.rst
    assert {r["path"] for r in seen["results"]} == expected_files(run)
    assert rendering_problems(seen, run) == []
    images = [r for r in seen["results"] if r["mime"] == "image/png"]
    assert images and all(r["natural_size"][0] > 0 for r in images)
    for result in seen["results"]:
        if result["caption_table_rows"]:
            # A table's caption (its CSV's and its plot's) shows the table: every row of the CSV.
            table = run / "results" / f"{Path(result['path']).stem}.csv"
            assert result["caption_table_rows"] == [len(pd.read_csv(table))], result["path"]


@pytest.mark.slow
def test_a_broken_figure_is_caught(reported_run, tmp_path):
    """The browser check can fail: a PNG cut in half in the page is reported as not shown."""
    run, report = reported_run
    chromium()
    path, entry = next((p, e) for p, e in embedded_results(report).items() if p.endswith(".png"))
    data = (run / path).read_bytes()
    head = entry["data_uri"].partition(";base64,")[0]
    broken = f"{head};base64,{base64.b64encode(data[: len(data) // 2]).decode()}"
    page = report.read_text()
    assert page.count(entry["data_uri"]) == 1
    damaged = tmp_path / "damaged.html"
    damaged.write_text(page.replace(entry["data_uri"], broken))
    seen = browse(damaged, tmp_path)
    assert [p.split(":")[0] for p in rendering_problems(seen, run)] == [path]
