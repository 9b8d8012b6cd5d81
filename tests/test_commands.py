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
from pathlib import Path

import pytest
from workflow import REPO, copy_repo, snakemake

# Files whose commands users copy. README.md is the lead's: add it here once its commands are
# the profile form (`snakemake --profile slurm results/table5.csv`).
DOC_FILES = ["Snakefile", "config/README.md", "docs/paper-scale.md", "slurm/config.yaml",
             "config/paper.yaml", "config/standin.yaml"]

_COMMAND = re.compile(r"(?:^|[`\s])snakemake\s+(?P<args>[^`]*)")


def documented_commands() -> list[tuple[str, str]]:
    """(file, command arguments) of every `snakemake ...` command in DOC_FILES."""
    found = []
    for name in DOC_FILES:
        lines = (REPO / name).read_text().splitlines()
        joined: list[str] = []
        for line in lines:  # shell continuations: one command over several lines
            if joined and joined[-1].endswith("\\"):
                joined[-1] = joined[-1][:-1] + " " + line.strip().lstrip("#").strip()
            else:
                joined.append(line)
        for line in joined:
            text = line.strip().lstrip("#").strip()
            for match in _COMMAND.finditer(text):
                args = match.group("args").split("  #")[0].split(" # ")[0].strip()
                if args and not args.startswith(("(", "9", "run", "job", "itself")):
                    found.append((name, args))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_the_paper_and_standin_commands():
    shown = {args for _, args in COMMANDS}
    assert "--profile slurm results/table5.csv" in shown
    assert any("config/standin.yaml" in args for args in shown)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("commands") / "repo")


@pytest.mark.parametrize(("doc", "args"), COMMANDS, ids=[f"{d}:{a}" for d, a in COMMANDS])
def test_documented_command_plans_offline(fresh, doc, args):
    argv = shlex.split(args)
    if "--conda-create-envs-only" in argv and not shutil.which("conda"):
        argv = [a for a in argv if a not in ("--sdm", "conda", "--conda-create-envs-only")]
    done = snakemake(fresh, *argv, "-n", check=False, timeout=600)
    text = done.stdout + done.stderr
    assert done.returncode == 0, f"{doc}: `snakemake {args}` failed:\n{text[-3000:]}"
    if "--unlock" not in argv:
        assert "This was a dry-run" in text or "Nothing to be done" in text, text[-2000:]
