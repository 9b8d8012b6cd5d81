"""Shared test setup: import `mtl` from scripts/ and keep Hugging Face libraries offline."""

import os
import sys
import time
from pathlib import Path

# Set before any test module imports huggingface_hub, which reads these once at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SRC = Path(__file__).resolve().parent.parent / "scripts"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


import pytest  # noqa: E402
from workflow import (  # noqa: E402
    STANDIN_CONFIG,
    STANDIN_MERGE,
    STANDIN_TABLES,
    TEST_CONFIG,
    copy_repo,
    snakemake,
)


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """The test config's whole DAG to results/table5.csv, built once in a fresh copy."""
    workdir = copy_repo(tmp_path_factory.mktemp("toy-run") / "repo")
    snakemake(workdir, "results/table5.csv", "--cores", "2", *TEST_CONFIG)
    return workdir


@pytest.fixture(scope="session")
def standin_run(tmp_path_factory) -> tuple[Path, str]:
    """The stand-in to its kept merge and table 5, built once in a fresh copy (its tests read it;
    the SLURM test compares its own run's artifacts with it); the copy and snakemake's output."""
    workdir = copy_repo(tmp_path_factory.mktemp("standin") / "repo")
    start = time.monotonic()
    done = snakemake(workdir, "--cores", "2", "--keep-going", *STANDIN_CONFIG, "--",
                     STANDIN_MERGE, *STANDIN_TABLES, check=False)
    print(f"stand-in build: {time.monotonic() - start:.0f} s")  # shown with -s / -rP
    return workdir, done.stdout + done.stderr
