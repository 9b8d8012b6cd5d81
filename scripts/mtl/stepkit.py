"""What every step program does first: logging to its Snakemake log, numerics, threads, seeds.

Numerics. Float results on the CPU depend on which kernels run: ATen picks vectorized kernels by
the CPU's instruction set (AVX-512, AVX2 or none), MKL picks its GEMM code path the same way,
oneDNN JIT-compiles for the CPU it finds, and reductions split by the intra-op thread count
round differently. Training amplifies one ulp into different weights and different scores. So
the workflow pins all of them (`numerics` in the config): `numerics_environment` is the job
environment that pins the instruction-set level, which rules/common.smk sets before any job
starts (these libraries read it when they load, before a step program could change it), and
`setup` fixes the thread count, turns on deterministic algorithms and refuses to run if the
pinned environment did not reach the job.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The defaults of config/schema.yaml's `numerics`, for callers that pass a partial mapping.
NUMERICS_DEFAULTS: dict[str, Any] = {"cpu_isa": "baseline", "threads": 1, "deterministic": True}

# Per pinned level: ATen's dispatch level, MKL's conditional numerical reproducibility branch
# (and the highest instruction set it may use), oneDNN's highest ISA. "baseline" runs the same
# code on every x86-64 CPU (MKL's COMPATIBLE branch is for Intel and compatible CPUs); "avx2" on
# every Intel CPU with AVX2 (on other CPUs MKL ignores an AVX2 branch and picks its own).
_ISA_ENVIRONMENT = {
    "baseline": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
}
CPU_ISA_LEVELS = (*_ISA_ENVIRONMENT, "native")
# What torch.backends.cpu.get_cpu_capability() reports under each ATEN_CPU_CAPABILITY value.
_ATEN_REPORTS = {"default": "DEFAULT", "avx2": "AVX2", "avx512": "AVX512"}
# cuBLAS needs a fixed workspace for deterministic GEMMs; it reads this when CUDA starts.
_CUDA_DETERMINISM = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
# Thread counts of OpenMP and MKL: Snakemake sets both to the job's `threads` in every job, so
# they are pinned in the job itself (torch.set_num_threads, or these before torch loads).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Every variable this module may pin: provenance records their values in each job.
NUMERICS_VARIABLES = (*_ISA_ENVIRONMENT["baseline"], *_CUDA_DETERMINISM, *_THREAD_VARIABLES)


def numerics_settings(numerics: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config's `numerics` with defaults filled in; an unknown level is named."""
    settings = {**NUMERICS_DEFAULTS, **(numerics or {})}
    if settings["cpu_isa"] not in CPU_ISA_LEVELS:
        raise ValueError(
            f"config numerics.cpu_isa: {settings['cpu_isa']!r} is not one of {CPU_ISA_LEVELS}"
        )
    threads = settings["threads"]
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"config numerics.threads: {threads!r} is not null or an integer >= 1")
    return settings


def numerics_environment(numerics: Mapping[str, Any] | None) -> dict[str, str]:
    """The environment variables every job needs for `numerics` (empty for what is not pinned).

    These must be in the environment before torch loads: ATen, MKL and OpenMP read them once.
    """
    settings = numerics_settings(numerics)
    env: dict[str, str] = dict(_ISA_ENVIRONMENT.get(settings["cpu_isa"], {}))
    if settings["deterministic"]:
        env.update(_CUDA_DETERMINISM)
    return env


def pin_environment(environ: dict[str, str], numerics: Mapping[str, Any] | None) -> list[str]:
    """Set the job environment of `numerics` in `environ`; returns the outside values replaced.

    Deliberately overrides what the caller's shell set (an outside ATEN_CPU_CAPABILITY=avx2
    would otherwise change every number), and says which, so the override is never silent.
    """
    replaced = []
    for name, value in numerics_environment(numerics).items():
        if environ.get(name, value) != value:
            replaced.append(f"{name}={environ[name]} (now {value})")
        environ[name] = value
    return replaced


def check_library(smk) -> None:
    """Fail unless this mtl is the one beside the step program (rules/common.smk says why)."""
    here = Path(__file__).resolve().parent
    expected = Path(smk.scriptdir).resolve() / "mtl"
    if here != expected:
        raise RuntimeError(
            f"rule {smk.rule}: the step program is from {smk.scriptdir} but the library mtl was "
            f"imported from {here}, another copy installed in this Python environment. Run "
            f"through this checkout's Snakefile (it puts {expected.parent} first on PYTHONPATH), "
            "or reinstall this checkout with `pip install -e .`."
        )


def apply_numerics(numerics: Mapping[str, Any] | None, rule: str, rule_threads: int) -> int:
    """Pin the job's numerics (see the module docstring); returns the intra-op thread count.

    Before torch is imported the environment can still be set here; after, a variable that
    differs from the pinned value is an error: the libraries have already read it.
    """
    settings = numerics_settings(numerics)
    wanted = numerics_environment(settings)
    threads = settings["threads"] or max(1, int(rule_threads))
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ.update(wanted)
        os.environ.update(dict.fromkeys(_THREAD_VARIABLES, str(threads)))
    else:
        wrong = {n: os.environ.get(n) for n, v in wanted.items() if os.environ.get(n) != v}
        aten = wanted.get("ATEN_CPU_CAPABILITY")
        in_use = torch.backends.cpu.get_cpu_capability()
        if aten is not None and in_use != _ATEN_REPORTS[aten]:
            wrong["torch CPU capability"] = in_use
        if wrong:
            found = ", ".join(f"{n}={v}" for n, v in sorted(wrong.items()))
            pinned = ", ".join(f"{n}={v}" for n, v in sorted(wanted.items()))
            raise RuntimeError(
                f"rule {rule}: numerics {settings} need {pinned} in the job's environment before "
                f"torch loads, but this job has {found}. Run it through the workflow (rules/"
                "common.smk sets them), or set numerics.cpu_isa: native and numerics.threads: "
                "null to accept machine-dependent numbers."
            )
    if torch is not None:
        torch.set_num_threads(threads)
        if settings["deterministic"]:
            # warn_only: an op without a deterministic kernel is named in the job log instead
            # of stopping a run (on the CPU every op this workflow uses has one).
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
    return threads


def setup(smk, seed: int | None = None) -> logging.Logger:
    """Log to the job's log file and to stderr; pin numerics, threads and seeds."""
    check_library(smk)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if smk.log:
        os.makedirs(os.path.dirname(str(smk.log[0])) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(str(smk.log[0]), mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # tokenizers has its own pool, whose splits do not change results but oversubscribe cores.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    apply_numerics(smk.config.get("numerics"), smk.rule, smk.threads)
    torch = sys.modules.get("torch")  # only steps that already use torch pay for it
    if torch is not None and seed is not None:
        torch.manual_seed(seed)
    if seed is not None:
        random.seed(seed)
    log = logging.getLogger(f"mtl.{smk.rule}")

    def log_failure(kind, error, trace) -> None:
        # The rule's log must say why the job failed, not only the terminal.
        log.critical("%s failed: %s", smk.rule, error, exc_info=(kind, error, trace))

    sys.excepthook = log_failure
    return log
