"""Helpers for tests that run the workflow: a fresh copy of the repository, snakemake in it,
the jobs a dry run plans, and the content hashes its provenance records carry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = ["--configfile", "config/test.yaml"]
RESULT_SOURCES = {"results/paper_reference.csv"}


def _seeds(*configs: str) -> list[int]:
    """The `seeds` of config.yaml with `configs` layered on it (the last that sets it wins)."""
    seeds: list[int] = []
    for name in ("config/config.yaml", *configs):
        seeds = yaml.safe_load((REPO / name).read_text()).get("seeds", seeds)
    return seeds


# The seeds a run of config/test.yaml trains; the first is the one tables read by role.
TEST_SEEDS = _seeds("config/test.yaml")
# The stand-in (one seed): its run builds the three-skill merge kept on disk and table 5.
STANDIN_CONFIG = ["--configfile", "config/standin.yaml"]
STANDIN_SEED = _seeds("config/standin.yaml")[0]
STANDIN_MERGE = (f"results/merged/seed-{STANDIN_SEED}/"
                 "merge-ta-heuristic-science-pertask20+safety-all+coding-all")
STANDIN_TABLES = ["results/table5.csv", "results/table5_vs_paper.csv"]
SHARED_MODELS = ("pretrained", "general")


def seeded(kind: str, name: str, seed: int | None = None) -> str:
    """results/<kind>/seed-<N>/<name> (the test config's first seed by default), or
    results/<kind>/<name> for θ_pre and θ_G, which every seed shares."""
    if name in SHARED_MODELS:
        return f"results/{kind}/{name}"
    return f"results/{kind}/seed-{TEST_SEEDS[0] if seed is None else seed}/{name}"
_SKIP = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__",
                               ".pytest_cache", ".ruff_cache", "*.egg-info")


def copy_repo(dest: Path) -> Path:
    """The files a fresh clone would have (tracked + untracked-but-not-ignored), nothing built:
    not even the tables committed under results/."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, dest, ignore=_SKIP, dirs_exist_ok=True)
        return dest
    for rel in (f.decode() for f in listed if f):
        # The committed tables are outputs, not sources; the paper's published numbers are
        # an input no rule writes (table5_vs_paper reads them).
        if rel.startswith("results/") and rel not in RESULT_SOURCES:
            continue
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def clone_run(src: Path, dest: Path) -> Path:
    """A copy of a built workflow directory, results and Snakemake's metadata included."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def env() -> dict[str, str]:
    out = dict(os.environ)
    # Jobs must find this same Python (pytest may run from .venv/bin without it on PATH).
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    out.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return out


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 1800,
              extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir,
                          env={**env(), **(extra_env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return done


_RULE = re.compile(r"^(?:local)?rule (\w+):$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")
NOTHING_TO_DO = "Nothing to be done"


def planned_jobs(workdir: Path, *args: str) -> set[tuple[str, str]]:
    """(rule, 'key=value, ...') of every job a dry run would execute, `all` left out.

    Checked against Snakemake's own summary, so a parser that matched nothing cannot pass for
    "nothing planned": the jobs found must add up to the "Job stats" table, or, when none are
    found, Snakemake must have said there is nothing to be done.
    """
    done = snakemake(workdir, "-n", *args)
    text = done.stdout + done.stderr
    jobs: list[list[str]] = []
    for line in text.splitlines():
        if match := _RULE.match(line.rstrip()):
            jobs.append([match.group(1), ""])
        elif (match := _WILDCARDS.match(line)) and jobs:
            jobs[-1][1] = match.group(1).strip()
    stats: dict[str, int] = {}
    if "Job stats:" in text:
        for line in text.split("Job stats:", 1)[1].splitlines():
            if line.strip().startswith("total"):
                break
            if match := _STATS_ROW.match(line.strip()):
                stats[match.group(1)] = int(match.group(2))
    counted: dict[str, int] = {}
    for rule, _ in jobs:
        counted[rule] = counted.get(rule, 0) + 1
    if not jobs and NOTHING_TO_DO not in text:
        raise AssertionError(f"dry run: no jobs parsed and no {NOTHING_TO_DO!r}:\n{text[-3000:]}")
    if jobs and counted != stats:
        raise AssertionError(f"dry run: parsed jobs {counted} != Job stats {stats}")
    return {(rule, wildcards) for rule, wildcards in jobs if rule != "all"}


def prov_hashes(workdir: Path) -> dict[str, str]:
    """Every artifact under results/ and its content hash, from its .prov.json sidecar."""
    return {
        prov.relative_to(workdir).as_posix()[: -len(".prov.json")]: json.loads(
            prov.read_text())["hash"]
        for prov in sorted((workdir / "results").rglob("*.prov.json"))
    }
