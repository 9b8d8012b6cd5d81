"""What a job checks before it loads anything: memory plan against its GPU, GPU count, disk room
for its checkpoints, a token for gated downloads, a working sandbox. A job that cannot finish
stops in its first seconds, naming what to change, not in hour 11.

`MTL_GPU_MEMORY_GB` and `MTL_GPU_COUNT` stand in for the GPUs a job sees (a site that reserves
part of each GPU, and the tests, which have none); `MTL_DISK_FREE_GB` for the free disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mtl.memplan import GB, JobPlan, fits

ENV_GPU_MEMORY = "MTL_GPU_MEMORY_GB"
ENV_GPU_COUNT = "MTL_GPU_COUNT"
ENV_DISK_FREE = "MTL_DISK_FREE_GB"


class PreflightError(RuntimeError):
    """A job's precondition does not hold; the message says which config key to change."""


def gpu_memory() -> int | None:
    """Bytes of the smallest GPU the job sees (None: no GPU, and none simulated)."""
    if os.environ.get(ENV_GPU_MEMORY):
        return int(float(os.environ[ENV_GPU_MEMORY]) * GB)
    import torch

    if not torch.cuda.is_available():
        return None
    return min(torch.cuda.get_device_properties(i).total_memory
               for i in range(torch.cuda.device_count()))


def gpu_count() -> int:
    if os.environ.get(ENV_GPU_COUNT):
        return int(os.environ[ENV_GPU_COUNT])
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_plan(plan: JobPlan, host_mb: int | None = None) -> None:
    """Stop unless `plan` fits the job's GPUs (count and memory) and its host memory."""
    gpus = gpu_count()
    if plan.gpus > 1 and gpus and gpus < plan.gpus:
        raise PreflightError(f"{plan.job}: the plan shards over {plan.gpus} GPUs but the job "
                             f"sees {gpus}; set resources.finetune.gpu to {gpus} or ask the "
                             "cluster for more")
    problems = fits(plan, gpu_memory(), None if host_mb is None else host_mb * 10**6)
    if problems:
        parts = "; ".join(f"{name} {value / GB:.1f} GB" for name, value in
                          sorted({**plan.gpu, **plan.host}.items(), key=lambda i: -i[1])[:4])
        raise PreflightError(f"{plan.job}: memory plan does not fit: {', '.join(problems)} "
                             f"(largest parts: {parts}); change {plan.key} or the job's "
                             "resources (python -m mtl.memplan prints every job's plan)")


def free_disk(folder: Path) -> int:
    if os.environ.get(ENV_DISK_FREE):
        return int(float(os.environ[ENV_DISK_FREE]) * GB)
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_disk(folder: Path, need: int, what: str) -> None:
    """Stop unless `folder`'s file system has `need` bytes free for `what`."""
    free = free_disk(folder)
    if free < need:
        raise PreflightError(f"{folder}: {free / GB:.1f} GB free, but {what} needs "
                             f"{need / GB:.1f} GB; free space there or move the workflow")


def weights_bytes(path: Path) -> int:
    """Bytes of a model folder's (or a single file's) safetensors weights."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files)


def check_token(repo: str, gated: object) -> None:
    """Stop before a download of gated `repo` (the hub's `gated` field) without a hub token."""
    if not gated:
        return
    from huggingface_hub import get_token

    if not get_token():
        raise PreflightError(f"{repo} is gated on the Hugging Face hub and no token is set: "
                             "accept its license on the hub, then `huggingface-cli login` or "
                             "set HF_TOKEN on the host that runs the downloads")


def check_sandbox() -> None:
    """Stop unless model-written code can run contained (mtl.sandbox's probe)."""
    from mtl import sandbox

    try:
        sandbox.probe()
    except sandbox.SandboxUnavailable as err:
        raise PreflightError(f"the coding benchmarks cannot run: {err}") from None
