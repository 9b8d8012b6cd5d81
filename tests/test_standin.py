"""The stand-in (config/standin.yaml) end to end on the CPU: paper scale's code paths in minutes.

θ_pre is a tiny random Llama-2-shaped model with a BPE tokenizer that has no chat template and no
pad token; the four training sets are rows in the hub schemas, loaded through `datasets` from
local files; θ_G and each θ_D train in 2 FSDP2 processes on gloo; then τ (across the vocabulary
resize V -> V+1) and a heuristic-ω merge of all three skills, written to disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from workflow import copy_repo, snakemake

TARGET = "results/merged/merge-ta-heuristic-science-pertask20+safety-all+coding-all"
CONFIG = ["--configfile", "config/standin.yaml"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    workdir = copy_repo(tmp_path_factory.mktemp("standin") / "repo")
    done = snakemake(workdir, "--cores", "2", "--keep-going", *CONFIG, "--", TARGET,
                     check=False)
    return workdir, done.stdout + done.stderr


def rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def test_standin_trains_theta_g_and_theta_d_in_two_processes(run):
    workdir, log = run
    models = workdir / "results" / "models"
    base = json.loads((models / "pretrained" / "config.json").read_text())
    tokenizer = json.loads((models / "pretrained" / "tokenizer_config.json").read_text())
    assert "chat_template" not in tokenizer and tokenizer.get("pad_token") is None
    for name in ("general", "ptm-science-pertask20", "ptm-safety-all", "ptm-coding-all"):
        assert (models / name).is_dir(), f"{name} was not trained:\n{log[-4000:]}"
        record = json.loads((models / f"{name}.prov.json").read_text())
        assert record["notes"]["processes"] == 2, record["notes"]
        with safe_open(models / name / "model.safetensors", "pt") as weights:
            assert weights.get_slice("model.embed_tokens.weight").get_shape()[0] \
                == base["vocab_size"] + 1  # the pad token's row
    # Source filters applied: the general mix has no science/code/hard-coded rows.
    general = (workdir / "results" / "sources" / "general.jsonl").read_text()
    assert '"source": "science' not in general and '"source": "code_alpaca"' not in general
    assert rows(workdir / "results" / "sources" / "safety.jsonl") > 0


@pytest.mark.xfail(strict=True, raises=FileNotFoundError,
                   reason="task_vector refuses the vocabulary resize until merge.resize_vocab: "
                          "pad reaches it (branch wt/merge); remove this marker then")
def test_standin_reaches_the_merged_model(run):
    workdir, log = run
    merged = workdir / TARGET
    if not (merged / "config.json").exists():
        raise FileNotFoundError(f"{TARGET} missing:\n{log[-3000:]}")
    assert (merged.parent / f"{merged.name}.prov.json").exists()
