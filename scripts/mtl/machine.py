"""Where and with what a step ran, as its provenance record (mtl.provenance) says: the
machine (CPU, GPUs, the numerics its kernels were pinned to), the packages and the checkout's
commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from mtl.stepkit import NUMERICS_VARIABLES

# Distribution names whose versions go into every record (those not installed are left out).
PACKAGES = (
    "torch",
    "transformers",
    "safetensors",
    "datasets",
    "lm_eval",
    "snakemake",
    "pandas",
    "numpy",
)


def git_state(cwd: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout; both None outside a git checkout (never fails)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        # Outputs are not code: the tables committed under results/ change with every run.
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)results"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(status.strip())}


def package_versions() -> dict[str, str]:
    # Metadata only: importing torch & co. just to read a version would cost seconds per job.
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def device() -> str:
    # Only consult torch if the job imported it; a job that never did ran on the CPU.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return str(torch.cuda.get_device_name())
    return "cpu"


# CPU instruction-set levels, best first, with the /proc/cpuinfo flags each needs.
ISA_LEVELS = (
    ("avx512", {"avx512f", "avx512bw", "avx512dq", "avx512vl"}),
    ("avx2", {"avx2", "fma"}),
    ("avx", {"avx"}),
    ("sse4_2", {"sse4_2"}),
)


def _cpu(cpuinfo: str) -> dict[str, Any]:
    """CPU model and instruction-set level from /proc/cpuinfo text (the first processor)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the end of the first processor's block
            continue
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    isa = next((name for name, need in ISA_LEVELS if need <= flags), "baseline")
    return {
        "model": fields.get("model name"),
        "isa": isa,
        "amx": "amx_tile" in flags,
    }


def _gpus(torch: Any) -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split("\n")[0].strip()
    except (OSError, subprocess.SubprocessError):
        driver = None
    count = torch.cuda.device_count()
    return {
        "names": [torch.cuda.get_device_name(i) for i in range(count)],
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def machine_facts() -> dict[str, Any]:
    """What tells two machines apart where numbers are concerned.

    `class` names the hardware (architecture, CPU model and level, GPUs); `numerics` what the
    job's kernels were pinned to (torch's dispatch level, threads, the numerics environment).
    Torch facts are read only when the job imported torch: a job that did not computed no floats.
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    cpu = _cpu(cpuinfo)
    cpu["arch"] = platform.machine()
    cpu["cores"] = os.cpu_count()
    cpu["usable_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    torch = sys.modules.get("torch")
    numerics: dict[str, Any] = {
        "environment": {name: os.environ.get(name) for name in NUMERICS_VARIABLES}
    }
    gpu = None
    if torch is not None:
        numerics.update(
            kernels=torch.backends.cpu.get_cpu_capability(),
            threads=torch.get_num_threads(),
            interop_threads=torch.get_num_interop_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
        )
        gpu = _gpus(torch)
    gpus = ", ".join(gpu["names"]) if gpu else "no GPU"
    return {
        "class": f"{cpu['arch']} {cpu['isa']} ({cpu['model'] or 'unknown CPU'}), {gpus}",
        "cpu": cpu,
        "gpu": gpu,
        "numerics": numerics,
        "os": platform.platform(),
        "libc": " ".join(platform.libc_ver()).strip() or None,
    }


def numerics_summary(machine: dict[str, Any]) -> dict[str, Any]:
    """What in a record's machine facts decides float results: kernel level, threads, pins."""
    numerics = machine.get("numerics", {})
    return {
        "kernels": numerics.get("kernels"),
        "threads": numerics.get("threads"),
        "environment": {k: v for k, v in numerics.get("environment", {}).items() if v},
    }


def machine_line(record: dict[str, Any]) -> str:
    machine = record.get("machine")
    if not machine:
        return "(the record has no machine facts)"
    numerics = numerics_summary(machine)
    pins = " ".join(f"{k}={v}" for k, v in sorted(numerics["environment"].items())) or "none"
    return (
        f"{machine['class']}; kernels {numerics['kernels']}, {numerics['threads']} thread(s),"
        f" pinned {pins}; torch {record.get('packages', {}).get('torch')}"
    )
