"""What a report item is (the entries are mtl.report_items): the `Plan` its inputs derive from,
the ids it `Reads`, its `Caption` and the `ReportItem` itself, which writes its CSV."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mtl import tables
from mtl.io import write_csv
from mtl.merge.recipe import COMPARABLE
from mtl.provenance import Step
from mtl.targets import Pair

Params = Mapping[str, Any]  # the rule's params: suites, skills, seeds, method, the item's own


@dataclass(frozen=True)
class Plan:
    """What the items' inputs and params derive from: the config's skills in paper order, each
    with its data sizes (the first is the size every item but Table 2 uses), the table method's
    tag (the config's merge method), DARE's density and the methods the comparison shows."""

    sizes: Mapping[str, Sequence[str]]
    method: str
    density: float
    # The methods Table 6 and Figure 3 compare, by registry name
    # (mtl.merge.recipe.compared_methods).
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
class Caption:
    """An item's own text in its HTML report caption (report/item.rst adds the spread over
    seeds, the rule, inputs and provenance, and the config it ran with): reStructuredText, and
    Jinja over `snakemake` (the job: config, input, output, params, rule) as Snakemake renders
    captions. `text` says what the item shows; `choice` how its picked rows ("best") are picked;
    `steps` whether it reports the trained models' optimizer steps; `config` more of the config
    it ran with (one "; "-separated part of the caption's "Run with")."""

    text: str
    choice: str = ""
    steps: bool = False
    config: str = ""


@dataclass(frozen=True)
class ReportItem:
    """One table or figure: results/<name>.csv (and results/figures/<name>.png with a plot).

    `reads` the ids it needs under the config's plan; `make` computes the CSV from the results
    table and the rule's params; `caption` describes it in the HTML report; `plot` draws it
    (data, results, params, path); `params` are the item's own params beside the shared ones;
    `needs` a skill without which the config cannot make it; `config_keys` the config its
    provenance record keeps; `cells` the label columns of a table whose score cells are noted
    (None for a figure's data); `notes` records more cells.
    """

    name: str
    reads: Callable[[Plan], Reads]
    make: Callable[[pd.DataFrame, Params], pd.DataFrame]
    caption: Caption
    plot: Callable[[pd.DataFrame, pd.DataFrame, Params, str], None] | None = None
    params: Callable[[Plan], dict[str, Any]] = lambda plan: {}
    needs: str | None = None
    config_keys: tuple[str, ...] = ("seeds", "evaluation", "merge")
    cells: tuple[str, ...] | None = ("model",)
    notes: Callable[[pd.DataFrame, Step, list[str], Params], None] | None = None

    def caption_template(self, template: str) -> str:
        """The caption Snakemake renders for this item: `template` (report/item.rst's text) after
        this item's caption, set as the Jinja variables the template reads (`table`: a table,
        which the caption shows, rather than a figure's data)."""
        parts = {"caption": self.caption.text, "choice": self.caption.choice,
                 "config": self.caption.config}
        blocks = [f"{{% set {name} %}}\n{textwrap.dedent(text).strip()}\n{{%- endset %}}\n"
                  for name, text in parts.items()]
        flags = (f"{{% set steps = {self.caption.steps} %}}\n"
                 f"{{% set table = {self.cells is not None} %}}\n")
        return "".join(blocks) + flags + template

    def write(self, data: pd.DataFrame, path: str, *, step: Step, evals: list[str],
              params: Params) -> None:
        """The CSV at `path`; a table's cells (and any further `notes`) in `step`'s record."""
        if self.cells is None:
            write_csv(data, path)
            return
        tables.write_table(data, path, step=step, evals=evals, label_columns=self.cells)
        if self.notes:
            self.notes(data, step, evals, params)
