"""Same bytes whatever the machine: numerics pinned in every job (mtl.stepkit, rules/common.smk).

The workflow test runs the test config a second time under outside settings that would change
kernel dispatch and threading (what a machine without AVX-512, or a user's shell, would do) and
with another --cores, and requires every artifact to hash the same as the session's plain run.
The unit tests check the pinning itself: the environment, the override, the refusal to run when
torch already loaded other settings, and the thread count that ignores the rule's `threads`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from workflow import TEST_CONFIG, background_build, copy_repo, prov_hashes, snakemake

from mtl import stepkit

# What a machine without AVX2, one core and a user's own MKL setting would give a job if the
# workflow did not pin it (the configs pin AVX2 kernels; these are the portable ones).
OUTSIDE = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "1",
}


def test_the_baseline_pins_every_library_that_dispatches_by_cpu() -> None:
    env = stepkit.numerics_environment({"cpu_isa": "baseline", "threads": 1,
                                        "deterministic": True})
    assert env == {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
    native = stepkit.numerics_environment({"cpu_isa": "native", "deterministic": False})
    assert native == {}
    with pytest.raises(ValueError, match=r"numerics\.cpu_isa: 'avx9'"):
        stepkit.numerics_environment({"cpu_isa": "avx9"})
    with pytest.raises(ValueError, match=r"numerics\.threads: 0"):
        stepkit.numerics_settings({"threads": 0})


def test_outside_values_are_overridden_and_named() -> None:
    environ = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "PATH": "/bin"}
    replaced = stepkit.pin_environment(environ, {"cpu_isa": "baseline"})
    assert replaced == ["ATEN_CPU_CAPABILITY=avx2 (now default)"]  # MKL_CBWR was already right
    assert environ["ATEN_CPU_CAPABILITY"] == "default" and environ["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    assert environ["PATH"] == "/bin"
    assert stepkit.pin_environment(environ, {"cpu_isa": "baseline"}) == []


def _job(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A fresh interpreter, as a job is: what torch loads with depends on its environment."""
    program = textwrap.dedent(code)
    clean = {k: v for k, v in os.environ.items() if k not in stepkit.NUMERICS_VARIABLES}
    return subprocess.run([sys.executable, "-c", program], env={**clean, **env},
                          capture_output=True, text=True, timeout=300)


def test_a_job_pins_threads_and_kernels_whatever_its_threads() -> None:
    done = _job(
        """
        from mtl import stepkit
        threads = stepkit.apply_numerics({"threads": 1}, "train", rule_threads=4)
        import torch
        print(threads, torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())
        """,
        {"PYTHONPATH": stepkit.__file__.rsplit("/mtl/", 1)[0]},
    )
    assert done.returncode == 0, done.stderr
    # Set before torch loaded: the job's 4 threads are ignored, the kernels are the baseline's.
    assert done.stdout.split() == ["1", "1", "DEFAULT"]


def test_a_job_whose_torch_loaded_other_numerics_refuses_to_run() -> None:
    done = _job(
        """
        import torch
        from mtl import stepkit
        stepkit.apply_numerics({"cpu_isa": "baseline"}, "train", rule_threads=1)
        """,
        {"PYTHONPATH": stepkit.__file__.rsplit("/mtl/", 1)[0], "ATEN_CPU_CAPABILITY": "avx2"},
    )
    assert done.returncode != 0
    assert "rule train: numerics" in done.stderr
    assert "ATEN_CPU_CAPABILITY=avx2" in done.stderr and "run it through the workflow" in (
        done.stderr.replace("Run", "run"))


def test_a_job_pinned_by_the_environment_passes_and_gets_fixed_threads() -> None:
    env = stepkit.numerics_environment(None)
    done = _job(
        """
        import torch
        from mtl import stepkit
        stepkit.apply_numerics(None, "train", rule_threads=2)
        print(torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
        """,
        {"PYTHONPATH": stepkit.__file__.rsplit("/mtl/", 1)[0], **env, "OMP_NUM_THREADS": "2"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True"]


@background_build
def outside_settings_run(folder: Path) -> tuple[Path, str]:
    """config/test.yaml to table 5 under OUTSIDE settings and --cores 1, in a fresh copy (built
    in the background from the start of the session: a one-core run leaves the other core to
    the tests), with the run's stderr."""
    other = copy_repo(folder / "repo")
    done = snakemake(other, "results/table5.csv", "--cores", "1", *TEST_CONFIG,
                     extra_env=OUTSIDE)
    return other, done.stderr


@pytest.mark.slow
def test_other_dispatch_and_threads_give_identical_artifacts(toy_run, outside_settings_run):
    """config/test.yaml under outside settings that change kernel dispatch and threading, and
    --cores 1, against the session's plain --cores 2 run: every artifact the same bytes."""
    other, stderr = outside_settings_run
    assert "numerics: replaced the outside ATEN_CPU_CAPABILITY=default (now avx2)" in stderr
    first, second = prov_hashes(toy_run), prov_hashes(other)
    assert first.keys() == second.keys()
    differing = sorted(k for k in first if first[k] != second[k])
    assert not differing, f"artifacts differ with other dispatch and threads: {differing}"
    # The records say what the jobs ran with: the pinned numerics, not the outside ones.
    record = json.loads((other / "results/models/pretrained.prov.json").read_text())
    numerics = record["machine"]["numerics"]
    assert numerics["kernels"] == "AVX2" and numerics["threads"] == 1
    assert numerics["environment"]["MKL_CBWR"] == "AVX2"
