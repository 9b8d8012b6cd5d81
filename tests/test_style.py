"""The repository's own style gates, so CI holds every change to them: ruff (lint), snakefmt
(rule formatting) and `snakemake --lint` (at both scales: the paper config adds hub rules)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from workflow import REPO, env


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean():
    done = _run(sys.executable, "-m", "ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_snakemake_files_are_snakefmt_formatted():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]
    done = _run(sys.executable, "-m", "snakefmt", "--check", *files)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("config", ["config/config.yaml", "config/paper.yaml"])
def test_snakemake_lint_finds_nothing(config):
    done = _run(sys.executable, "-m", "snakemake", "--lint", "--configfile", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations" in done.stdout + done.stderr, done.stdout + done.stderr
