"""What each job asks a cluster for, from the config's `resources.<family>` (docs/cluster.md).

A family's resources are `default` overlaid with the family's own keys. Every job asks for
`threads`, `mem_mb` and `runtime` (minutes); a family with `gpu` > 0 also asks for that many
GPUs, all on one node (a training job's workers talk through one node's GPU links, and torchrun
starts them on one host), of the kind `gpu_model` names or the nodes `constraint` selects.
A retry asks for more memory and time, up to the caps of the family's partition
(`max_mem_mb`, `max_runtime`), so a third attempt still fits the partition it is sent to.
"""

from __future__ import annotations

from collections.abc import Mapping

# The resources a retry grows, each with the key of its partition's cap.
GROWING = {"mem_mb": "max_mem_mb", "runtime": "max_runtime"}


class ResourceError(ValueError):
    """A family's resources that no job could be submitted with (the message names the key)."""


def merged_resources(resources: Mapping[str, Mapping], family: str) -> dict:
    """`resources.default` overlaid with `resources.<family>`, over the built-in minimum."""
    merged: dict = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
    merged.update(resources.get("default", {}))
    merged.update(resources.get(family, {}))
    return merged


def on_retry(spec: Mapping, key: str, attempt: int, family: str) -> int:
    """`mem_mb` or `runtime` for the given attempt (1, 2, ...): the base times the attempt,
    capped at the partition's limit (`max_mem_mb`, `max_runtime`) when the config sets one."""
    base, cap = spec[key], spec.get(GROWING[key])
    if cap is not None and base > cap:
        raise ResourceError(
            f"resources.{family}.{key} = {base} is above the partition's cap "
            f"resources.{family}.{GROWING[key]} = {cap}: no job could be submitted"
        )
    grown = base * attempt
    return grown if cap is None else min(grown, cap)


def slurm_resources(spec: Mapping) -> dict:
    """The Snakemake resources, beyond threads/memory/time, that the SLURM plugin turns into
    `sbatch` flags: GPUs on one node (`--gpus=[model:]N --nodes=1 --cpus-per-gpu`), the node
    constraint (`-C`) and the warning signal before the time limit (`--signal=USR1@s` to every
    process of the job's steps: training saves a checkpoint and stops, while torchrun, which
    SIGTERM would make kill its workers at once, ignores it). CPU jobs need none of them."""
    if not spec["gpu"]:
        return {}
    extra = {"gpu": spec["gpu"], "nodes": 1,
             "cpus_per_gpu": spec.get("cpus_per_gpu", spec["threads"])}
    if spec.get("gpu_model"):
        extra["gpu_model"] = spec["gpu_model"]
    if spec.get("constraint"):
        extra["constraint"] = spec["constraint"]
    if spec.get("signal_seconds"):
        extra["slurm_extra"] = f"--signal=USR1@{spec['signal_seconds']}"
    return extra


def gpus_given(environ: Mapping[str, str], requested: int) -> int:
    """How many GPUs this job was given: SLURM's count for the node (SLURM_GPUS_ON_NODE), else
    the devices CUDA_VISIBLE_DEVICES lists, else (no scheduler said) the count requested."""
    on_node = environ.get("SLURM_GPUS_ON_NODE", "").strip()
    if on_node:
        if not on_node.isdigit() or int(on_node) < 1:
            raise ResourceError(f"SLURM_GPUS_ON_NODE={on_node!r} is not a GPU count")
        return int(on_node)
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return requested
