"""The method registry is the one place a merge method is declared: the config schema's
`merge` section, recipes, labels and docs derive from it or are held to it here; a new method
is one new file, which the workflow plans without any other edit (the library's import circles:
test_style.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from workflow import REPO, TEST_CONFIG, copy_repo, planned_jobs, seeded

from mtl.merge import METHODS, OPTIONS, MergeError, Recipe
from mtl.merge.config import merge_config
from mtl.merge.recipe import merge_schema
from mtl.tables import METHOD_LABEL


def test_schema_is_the_registry() -> None:
    properties = merge_schema()["properties"]
    assert properties["method"]["enum"] == list(METHODS)
    # Every option a method reads is a config key, but the workflow's own seed.
    options = {name for method in METHODS.values() for name in method.options} - {"seed"}
    assert options <= properties.keys()
    for name in options:
        assert properties[name]["default"] == OPTIONS[name].default
    assert set(properties) - options == {"method", "omega_grid", "omega_sizes", "resize_vocab",
                                         "compare"}
    # What Table 6 compares: every method merging task vectors from θ_pre, none other.
    comparable = properties["compare"]["oneOf"][1]["items"]["enum"]
    assert comparable == [n for n, m in METHODS.items() if m.skills_from == "pre"]
    assert "wise_ft" not in comparable and "nuslerp" in comparable


def test_merge_config_fills_defaults_and_names_bad_values() -> None:
    config = merge_config({"method": "ties"})
    assert config["method"] == "ties" and config["density"] == OPTIONS["density"].default
    for bad, message in [
        ({"method": "slerp"}, "'slerp' is not one of"),
        ({"density": 1.5}, "merge.density: 1.5 is greater than the maximum of 1"),
        ({"gamma2": 1}, "'gamma2' was unexpected"),
        ({"compare": ["wise_ft"]}, "merge.compare: \\['wise_ft'\\] is not valid"),
    ]:
        with pytest.raises(MergeError, match=message):
            merge_config(bad)
    for name in ("config.yaml", "paper.yaml", "standin.yaml", "test.yaml"):
        merge_config(yaml.safe_load((REPO / "config" / name).read_text()).get("merge", {}))


def test_recipe_keeps_only_its_methods_options() -> None:
    merge = {"density": 0.3, "normalize": True}
    assert Recipe.from_config(merge, seed=0).method_options == {}
    ties = Recipe.from_config({**merge, "method": "ties"}, seed=0, skills=["a"])
    assert ties.method_options == {"density": 0.3, "normalize": True}
    assert Recipe.from_params(ties.to_params()) == ties
    with pytest.raises(MergeError, match="has no option"):
        Recipe(method="task_arithmetic", method_options={"density": 0.3})


def test_labels_and_docs_name_every_method() -> None:
    assert {m.tag: m.label for m in METHODS.values()} == METHOD_LABEL
    assert len(set(METHOD_LABEL.values())) == len(METHODS)
    config_doc = (REPO / "config/README.md").read_text()
    engine_doc = (REPO / "docs/merge-engine.md").read_text()
    for name, method in METHODS.items():
        assert f"`{name}`" in config_doc, name
        assert f"`{name}`" in engine_doc and f"merge-{method.tag}-" in engine_doc, name
    for name in merge_schema()["properties"]:
        assert f"`merge.{name}`" in config_doc, name


HALFWAY = '''
"""A throwaway method: θ_G plus half of each ω_k·τ_k."""

import torch

from mtl.merge.inputs import TensorInputs
from mtl.merge.methods import register
from mtl.merge.options import Option

SHARE = Option("share", float, 0.5, "the share of ω_k·τ_k added", low=0, high=1)


@register(
    "halfway",
    formula="θ = θ_G + share·Σ_k ω_k·τ_k",
    tag="half",
    label="Halfway",
    skills_as="tau",
    options=(SHARE,),
    elementwise=True,
)
def halfway(x: TensorInputs, omega: tuple[float, ...], out: torch.Tensor) -> torch.Tensor:
    out.copy_(x.theta_general)
    for w, tau in zip(omega, x.tau, strict=True):
        out.add_(tau, alpha=w * x.options.share)
    return out
'''


@pytest.mark.slow
def test_a_new_method_is_one_file(tmp_path: Path) -> None:
    """A method module dropped into mtl/merge/methods/ is a config method, a config option
    and a workflow target, with no other file edited."""
    repo = copy_repo(tmp_path / "repo")
    (repo / "scripts/mtl/merge/methods/halfway.py").write_text(textwrap.dedent(HALFWAY))
    override = tmp_path / "halfway.yaml"
    override.write_text(yaml.safe_dump({"merge": {"share": 0.25}}))
    target = seeded("evals", "merge-half-grid-science-all")
    planned = planned_jobs(repo, target, *TEST_CONFIG, str(override))
    merges = [w for rule, w in planned if rule == "evaluate_merge"]
    assert merges == ["seed=1234, method=half, weighting=grid, skillset=science-all"], planned
