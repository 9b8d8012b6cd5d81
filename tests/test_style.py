"""The repository's own style gates, so CI holds every change to them: ruff (lint), snakefmt
(rule formatting) and `snakemake --lint` (at both scales: the paper config adds hub rules).

Each gate is a hook of .pre-commit-config.yaml, run here through `pre-commit`, so the commands a
contributor's commit runs and the commands CI holds are one definition. The library's shape is
held here too: no import circle, no file over 450 lines."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow import REPO, env

LIBRARY = REPO / "scripts/mtl"
HOOKS = ["ruff", "snakefmt", "snakemake-lint", "snakemake-lint-paper"]


def _hook(hook: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", hook, "--all-files", "--verbose"],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_pre_commit_runs_the_ci_linters_on_installed_tools():
    """Every hook is `repo: local` on the environment's tools (nothing fetched) and every gate
    this file runs is one of them."""
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks = {hook["id"]: hook for hook in config["repos"][0]["hooks"]}
    assert sorted(hooks) == sorted(HOOKS)
    assert all(hook["language"] == "system" for hook in hooks.values())


@pytest.mark.parametrize("hook", HOOKS)
def test_lint_gate_is_clean(hook: str):
    done = _hook(hook)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Passed" in out, out  # "Skipped" would mean the hook matched no file
    if hook.startswith("snakemake-lint"):
        assert "Congratulations" in out, out


def test_snakefmt_hook_covers_every_rule_file():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hook = next(h for h in config["repos"][0]["hooks"] if h["id"] == "snakefmt")
    rules = (p.relative_to(REPO).as_posix() for p in (REPO / "rules").rglob("*.smk"))
    files = ["Snakefile", *rules]
    assert len(files) > 1
    missed = [f for f in files if not re.search(hook["files"], f)]
    assert not missed, f"the snakefmt hook does not check {missed}"


# Documents a user of this repository does not have (spelled in pieces so this file is no hit).
OUTSIDE = re.compile("|".join(["FACTS" + r"\.md", "CONTRACT" + r"\.md", r"\.\./" + "shared",
                               "/work/" + "shared"]))


def test_the_repository_refers_to_nothing_outside_it():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    hits = []
    for rel in filter(None, listed):
        path = REPO / rel
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        lines = enumerate(text.splitlines(), start=1)
        hits += [f"{rel}:{number}" for number, line in lines if OUTSIDE.search(line)]
    assert not hits, f"references to documents outside the repository: {hits}"


# A guide describes the workflow as it is; rounds of work belong to docs/history.md.
HISTORY = re.compile(r"\bissue \d+|\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|"
                     r"ninth|tenth|previous|earlier|last|this) session\b|\bsession that\b",
                     re.IGNORECASE)


def test_guides_speak_of_the_present():
    guides = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    hits = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            for path in guides if path.name != "history.md"
            for number, line in enumerate(path.read_text().splitlines(), start=1)
            if HISTORY.search(line)]
    assert not hits, "history belongs in docs/history.md:\n" + "\n".join(hits)


def _imports(path: Path) -> set[str]:
    """The mtl modules a library file imports, at run time or for type checking (`from mtl
    import x` names the module mtl.x where x is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtl"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mtl")}
    return found


def test_the_library_has_no_import_circle() -> None:
    modules = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = _imports(path) - {name}
    # A package's __init__ imports its submodules; a submodule importing its package for
    # registration is not a circle through other modules.
    graph = {
        name: {m for m in deps if m in modules and not name.startswith(m + ".")}
        for name, deps in modules.items()
    }
    assert {"mtl.audit", "mtl.merge.engine", "mtl.provenance"} <= graph.keys()
    cleared: set[str] = set()  # modules from which no path leads back into a path walked

    def visit(name: str, path: tuple[str, ...]) -> None:
        for dep in graph[name] - cleared:
            assert dep not in path, f"import circle: {' → '.join((*path, dep))}"
            visit(dep, (*path, dep))
        cleared.add(name)

    for name in graph:
        if name not in ("mtl", "mtl.merge"):  # a package imports everything it exports
            visit(name, (name,))


def test_no_library_file_is_over_450_lines():
    """A longer file holds more than one job: split it by job into modules."""
    long = {p.relative_to(REPO).as_posix(): n for p in LIBRARY.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}
