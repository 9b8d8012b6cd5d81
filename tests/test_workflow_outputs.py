"""Through Snakemake itself: a run replaces an output only when this workflow wrote everything
in it, and never takes a path it did not write as built (rules/outputs.smk). Snakemake deletes a
folder output before its job runs, so the library's own refusal alone cannot protect it.

A rerun with a user's file in a built merged-model folder (`--forcerun`, and an upstream job
rerun) and a folder made by hand at that path in a fresh copy: each run stops naming the file or
folder, and the file survives; a cluster job (which parses the Snakefile again) does not stop.
The built runs share the session's `toy_run`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from workflow import REPO, TEST_CONFIG, clone_run, copy_repo, env, seeded, snakemake

from mtl.provenance import hash_path, sidecar

pytestmark = pytest.mark.slow

MERGED = seeded("merged", "merge-ta-heuristic-science-all")
REFUSED = "deletes nothing it did not write (nothing was deleted)"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rerun_stops_at_a_users_file_in_a_built_folder(toy_run, tmp_path):
    run = clone_run(toy_run, tmp_path / "run")
    snakemake(run, MERGED, "--cores", "1", *TEST_CONFIG)
    folder = run / MERGED
    built_hash = hash_path(folder)
    (folder / "notes.txt").write_text("my notes on this merge\n")
    before = _snapshot(folder)

    # Forced (as after `--forcerun merge_model`), and because an upstream job reruns.
    for forced in ("merge_model", "task_vector"):
        done = snakemake(run, MERGED, "--cores", "1", "--forcerun", forced, *TEST_CONFIG,
                         check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output[-3000:]
        assert f"{MERGED}/notes.txt" in output and REFUSED in output, output[-3000:]
        assert _snapshot(folder) == before  # the user's file, and every file built
        assert sidecar(folder).exists()

    # Moved away, the same forced rerun goes ahead and rebuilds the same bytes.
    (folder / "notes.txt").rename(tmp_path / "notes.txt")
    snakemake(run, MERGED, "--cores", "1", "--forcerun", "merge_model", *TEST_CONFIG)
    assert hash_path(folder) == built_hash
    assert (tmp_path / "notes.txt").read_text() == "my notes on this merge\n"


def test_a_folder_made_by_hand_is_not_taken_as_built(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    folder = repo / MERGED
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine\n")
    for extra in ((), ("-n",)):
        done = snakemake(repo, MERGED, "--cores", "1", *extra, *TEST_CONFIG, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output[-3000:]
        assert "Nothing to be done" not in output
        assert f"{MERGED}: exists, but has no provenance record" in output, output[-3000:]
        assert (folder / "notes.txt").read_text() == "mine\n"
        assert not (repo / "results/world").exists()  # nothing was built on top of it either
    # A cluster job parses the Snakefile again, in remote mode with hooks off, as the SLURM
    # executor starts it: the main process checked before submitting, so the job goes ahead.
    snakemake(repo, "--mode", "remote", "--target-jobs", "world_corpus:", "--force",
              "--no-hooks", "--cores", "1", *TEST_CONFIG)
    assert (repo / "results/world/corpus.jsonl.prov.json").exists()
    assert (folder / "notes.txt").read_text() == "mine\n"
    audit = subprocess.run([sys.executable, "-m", "mtl.audit", MERGED], cwd=repo,
                           env={**env(), "PYTHONPATH": str(REPO / "scripts")},
                           capture_output=True, text=True, timeout=300)
    assert audit.returncode == 1
    assert f"{MERGED}/: FOREIGN" in audit.stdout, audit.stdout
