"""Shared test setup: import `mtl` from scripts/ and keep Hugging Face libraries offline."""

import os
import sys
from pathlib import Path

# Set before any test module imports huggingface_hub, which reads these once at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SRC = Path(__file__).resolve().parent.parent / "scripts"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


import pytest  # noqa: E402
from workflow import TEST_CONFIG, copy_repo, snakemake  # noqa: E402


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """The test config's whole DAG to results/table5.csv, built once in a fresh copy."""
    workdir = copy_repo(tmp_path_factory.mktemp("toy-run") / "repo")
    snakemake(workdir, "results/table5.csv", "--cores", "2", *TEST_CONFIG)
    return workdir
