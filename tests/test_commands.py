"""Every `snakemake` command the documentation shows parses and plans, offline, on a fresh copy.

The commands are read from the files themselves (not restated here), so a command edited in
the docs is the command tested. Each is dry-run (`-n` added) in a copy of the repository without
results, with the hub switched off: the paper's config must plan without anything downloaded
and without files a user cannot have.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from workflow import REPO, background_build, copy_repo, snakemake

# Files whose commands users copy.
DOC_FILES = ["README.md", "Snakefile", "config/README.md", "docs/paper-scale.md", "docs/cluster.md",
             "docs/paper-evaluation.md", "docs/toy-world.md", "slurm/config.yaml",
             "config/paper.yaml", "config/standin.yaml"]

_SPAN = re.compile(r"`snakemake\s+(?P<args>[^`]+)`")


def documented_commands() -> dict[str, str]:
    """Each distinct `snakemake ...` command in DOC_FILES (its arguments) -> the first file.

    A command is a line that starts with `snakemake ` (code blocks, YAML comments; a trailing
    `# comment` dropped; `\\` continuations joined) or an inline code span `snakemake ...`.
    """
    found: dict[str, str] = {}
    for name in DOC_FILES:
        joined: list[str] = []
        for line in (REPO / name).read_text().splitlines():
            text = line.strip().lstrip("#").strip()
            if joined and joined[-1].endswith("\\"):
                joined[-1] = joined[-1][:-1] + " " + text
            else:
                joined.append(text)
        for text in joined:
            commands = [m.group("args") for m in _SPAN.finditer(text)]
            if text.startswith("snakemake "):
                commands.append(text.removeprefix("snakemake ").split(" #")[0])
            for args in commands:
                found.setdefault(" ".join(args.split()), name)
    return found


COMMANDS = documented_commands()


def test_the_docs_show_the_paper_and_standin_commands():
    shown = set(COMMANDS)
    assert "--profile slurm results/table5.csv" in shown
    assert any("config/standin.yaml" in args for args in shown)


def _dry_run_argv(args: str) -> list[str]:
    """The documented command as it can be dry-run here."""
    argv = shlex.split(args)
    if "--conda-create-envs-only" in argv and not shutil.which("conda"):
        # Building conda envs needs conda; without it, check that the rest of the command plans.
        argv.remove("--conda-create-envs-only")
        at = argv.index("--sdm")
        del argv[at : at + 2]
    if "--report" in argv and "--report-after-run" not in argv:
        # A report reads what a run built, so a fresh copy has nothing to report: check that the
        # run it reports on plans.
        at = argv.index("--report")
        del argv[at : at + 2]
    return argv


@background_build
def documented_plans(folder: Path) -> dict[str, subprocess.CompletedProcess]:
    """Every documented command dry-run in one fresh copy, one after the other, in the
    background from the start of the session (tests/workflow.py): each is a Snakemake start
    and a DAG, seconds of one core that the other tests need not wait for."""
    fresh = copy_repo(folder / "repo")
    return {args: snakemake(fresh, "-n", *_dry_run_argv(args), check=False, timeout=600)
            for args in sorted(COMMANDS)}


@pytest.mark.parametrize("args", sorted(COMMANDS))
def test_documented_command_plans_offline(documented_plans, args):
    doc = COMMANDS[args]
    argv = _dry_run_argv(args)
    done = documented_plans[args]
    text = done.stdout + done.stderr
    assert done.returncode == 0, f"{doc}: `snakemake {args}` failed:\n{text[-3000:]}"
    if "--unlock" not in argv:
        assert "This was a dry-run" in text or "Nothing to be done" in text, text[-2000:]
