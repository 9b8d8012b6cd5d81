"""The pinned conda environments in envs/ (one per rule family) against requirements.txt.

requirements.txt is the single source of truth for versions; every env repeats a subset of its
pins exactly, pins python and pip exactly, and carries everything its rules' step programs
import. Every rule names one of these envs. The slow test resolves the pins against the package
index the way a cluster's conda (through pip) would.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ENVS = REPO / "envs"
RULES = REPO / "rules"
SRC = REPO / "scripts"
FAMILIES = ("data", "train", "merge", "eval", "report")
# Installed in the environment that runs Snakemake (jsonschema: the Snakefile's config validation),
# never inside a job's env.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "pulp", "jsonschema"}


def normalize(name: str) -> str:
    """PEP 503 name normalization: Foo_Bar.baz -> foo-bar-baz."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        assert match, f"{path.name}: {raw!r} is not an exact pin (name==version)"
        name = normalize(match.group(1))
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


@cache
def requirements() -> dict[str, str]:
    return parse_requirements(REPO / "requirements.txt")


@cache
def load_env(family: str) -> dict:
    path = ENVS / f"{family}.yaml"
    assert path.is_file(), f"missing {path.relative_to(REPO)}"
    return yaml.safe_load(path.read_text())


def env_pins(family: str) -> tuple[dict[str, str], dict[str, str]]:
    """(conda pins, pip pins) of an env file; every entry must be an exact pin."""
    conda, pip = {}, {}
    for dep in load_env(family)["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{family}.yaml: unexpected {dep}"
            for req in dep["pip"]:
                match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", req)
                assert match, f"{family}.yaml: pip entry {req!r} is not name==version"
                pip[normalize(match.group(1))] = match.group(2)
        else:
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s=*]*)", dep)
            assert match, f"{family}.yaml: conda entry {dep!r} is not name==version"
            conda[match.group(1)] = match.group(2)
    return conda, pip


def rule_blocks() -> dict[str, dict[str, str | None]]:
    """Every rule in rules/*.smk (both branches of `if TOY:`) with its conda env and script; a
    rule made in a loop (`rule:` with `name: <expression>`) under that expression."""
    rules = {}
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        heads = list(re.finditer(r"^(\s*)rule(?: (\w+))?:", text, re.M))
        for i, head in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            body = text[head.end() : end]
            found = {}
            for key in ("name", "conda", "script"):
                match = re.search(rf"^\s+{key}:\s*\n?\s*[\"']?([^\"'\n]+)[\"']?", body, re.M)
                found[key] = match.group(1) if match else None
            name = head.group(2) or found.pop("name")
            found.pop("name", None)
            assert name, f"{smk.name}: a rule without a name"
            assert name not in rules, f"rule {name} defined twice"
            rules[name] = {"file": smk.name, **found}
    return rules


# ---- the pins agree --------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_env_pins_repeat_requirements(family):
    env = load_env(family)
    assert env["name"] == f"mtl-{family}"
    assert "conda-forge" in env["channels"] and "nodefaults" in env["channels"]
    conda, pip = env_pins(family)
    assert set(conda) == {"python", "pip"}, f"{family}.yaml: conda installs python and pip only"
    assert pip, f"{family}.yaml has no pip section"
    reqs = requirements()
    unknown = sorted(set(pip) - set(reqs))
    assert not unknown, f"{family}.yaml pins {unknown}, which requirements.txt does not list"
    differ = {n: (v, reqs[n]) for n, v in pip.items() if reqs[n] != v}
    assert not differ, f"{family}.yaml disagrees with requirements.txt (env, reqs): {differ}"
    assert not set(pip) & WORKFLOW_ONLY, f"{family}.yaml installs the workflow manager"


def test_envs_share_python_and_pip():
    """One interpreter everywhere: Snakemake's script preamble appends the launching Python's
    sys.path inside each env, so the env's Python must be the same minor version as the one the
    workflow is developed and tested with (pyproject's requires-python)."""
    versions = {family: env_pins(family)[0] for family in FAMILIES}
    assert len({v["python"] for v in versions.values()}) == 1, versions
    assert len({v["pip"] for v in versions.values()}) == 1, versions
    python = versions[FAMILIES[0]]["python"]
    pyproject = (REPO / "pyproject.toml").read_text()
    minimum = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)', pyproject)
    assert minimum, "pyproject.toml: requires-python >=X.Y expected"
    major, minor = (int(x) for x in python.split(".")[:2])
    assert (major, minor) >= (int(minimum.group(1)), int(minimum.group(2)))


def test_every_requirement_is_in_some_env():
    """A pin in requirements.txt that no env carries is either dead or missing from an env."""
    used = set().union(*(env_pins(f)[1] for f in FAMILIES)) | WORKFLOW_ONLY
    assert not set(requirements()) - used, sorted(set(requirements()) - used)


# ---- every rule names an env -----------------------------------------------------------------


def test_every_rule_names_an_existing_env():
    rules = rule_blocks()
    assert rules, "no rules found in rules/*.smk"
    for name, rule in rules.items():
        assert rule["conda"], f"rule {name} ({rule['file']}) has no conda: directive"
        env = (RULES / rule["conda"]).resolve()
        assert env.parent == ENVS.resolve(), f"rule {name}: {rule['conda']} is not in envs/"
        assert env.is_file(), f"rule {name}: {rule['conda']} does not exist"
        assert env.stem in FAMILIES, f"rule {name}: {env.name} is not a rule family's env"
    assert {Path(r["conda"]).stem for r in rules.values()} == set(FAMILIES), "an env is unused"


# ---- every env carries what its step programs import ------------------------------------------


# Imports a module makes only when the package is already there (checked with find_spec).
OPTIONAL_IMPORTS = {("stepkit.py", "torch")}


def _imports(path: Path) -> set[str]:
    """Top-level modules a file imports (function-level imports included), except those guarded
    by `except ImportError`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if (path.name, m.split(".")[0]) not in OPTIONAL_IMPORTS}


def _module_file(module: str) -> Path | None:
    """The file of a module of the project's own library (scripts/mtl), if it is one."""
    parts = module.split(".")
    for candidate in (SRC.joinpath(*parts).with_suffix(".py"), SRC.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules a step program needs, following the project's library."""
    todo, seen, external = [script], set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            top = module.split(".")[0]
            if top == "mtl":
                own = _module_file(module)
                if own is not None:
                    todo.append(own)
                if own == SRC / "mtl" / "evaluation.py":
                    # lm-eval imports the toy tasks' helpers from the task folder at run time.
                    todo.extend((SRC / "mtl" / "lmeval_tasks").rglob("*.py"))
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external


@cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    dists = _distributions().get(module)
    assert dists, f"no installed distribution provides the module {module!r}"
    return normalize(dists[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_env_carries_what_its_scripts_import(family):
    _, pip = env_pins(family)
    scripts = {
        (RULES / rule["script"]).resolve()
        for rule in rule_blocks().values()
        if rule["conda"] and Path(rule["conda"]).stem == family and rule["script"]
    }
    missing = {}
    for script in sorted(scripts):
        if not script.is_file():
            continue  # a rule whose program is still to be written (paper-scale fetchers)
        for module in sorted(third_party_imports(script)):
            if module == "snakemake":
                continue  # the script preamble brings Snakemake's own modules
            dist = _distribution(module)
            if dist not in pip:
                missing.setdefault(script.name, []).append(f"{module} ({dist})")
    assert not missing, f"envs/{family}.yaml lacks packages its step programs import: {missing}"


# ---- the pins resolve ------------------------------------------------------------------------

_NETWORK = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Network is unreachable|ConnectTimeout|ReadTimeout|No route to host"
)


@pytest.mark.slow
def test_pins_resolve_from_the_index():
    """pip resolves every env's pins *with* their dependencies for this platform (Linux, the
    envs' Python minor version), as conda's pip step will on a cluster. One resolve of the union
    proves every env: a solution for the union, restricted to one env's dependency closure, is a
    solution for that env. Metadata only, nothing is installed; about 50 s here, where torch is
    the local CPU wheel (a cluster gets the CUDA wheel of the same version, whose extra
    dependencies are NVIDIA's libraries, not ours; resolving those too would fetch 3 GB)."""
    union = {}
    for family in FAMILIES:
        union.update(env_pins(family)[1])
    python = env_pins(FAMILIES[0])[0]["python"]
    if tuple(sys.version_info[:2]) != tuple(int(x) for x in python.split(".")[:2]):
        pytest.skip(f"resolving for Python {python} needs a Python {python[:4]} interpreter")
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("".join(f"{name}=={version}\n" for name, version in union.items()))
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check",
             "install", "--dry-run", "--ignore-installed", "--quiet",
             "--report", str(report), "-r", str(reqs)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if proc.returncode != 0 and _NETWORK.search(proc.stderr):
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"the package index is unreachable from CI:\n{proc.stderr[-2000:]}")
            pytest.skip("the package index is unreachable (no network)")
        assert proc.returncode == 0, f"the env pins do not resolve:\n{proc.stderr[-4000:]}"
        chosen = {
            normalize(item["metadata"]["name"]): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]
        }
    for name, version in union.items():
        assert chosen.get(name, "").split("+")[0] == version, (name, version, chosen.get(name))
