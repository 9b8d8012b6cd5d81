"""What jobs ask a cluster for (mtl.cluster), and which rules run where, without a cluster.

tests/test_slurm.py runs the same through a real SLURM; these are the fast checks of the rules
behind it: retries capped by the partition, GPUs on one node of the configured kind, workers
from the GPUs given, downloads on the submitting host.
"""

from __future__ import annotations

import re

import pytest
import yaml
from workflow import REPO

from mtl.cluster import ResourceError, gpus_given, merged_resources, on_retry, slurm_resources

PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
DOWNLOADS = {"fetch_base", "fetch_dataset", "fetch_judge", "fetch_evaldata"}


def test_retries_grow_up_to_the_partition_cap():
    spec = {"mem_mb": 160000, "runtime": 2880, "max_mem_mb": 240000, "max_runtime": 2880}
    assert [on_retry(spec, "mem_mb", a, "finetune") for a in (1, 2, 3)] == [160000, 240000,
                                                                            240000]
    assert [on_retry(spec, "runtime", a, "finetune") for a in (1, 2, 3)] == [2880] * 3
    # Without a cap the request grows with the attempt.
    assert on_retry({"mem_mb": 100}, "mem_mb", 3, "x") == 300


def test_a_base_above_its_cap_is_refused_naming_the_keys():
    with pytest.raises(ResourceError, match=r"resources\.evaluate\.mem_mb = 9000 .*"
                                            r"resources\.evaluate\.max_mem_mb = 8000"):
        on_retry({"mem_mb": 9000, "max_mem_mb": 8000}, "mem_mb", 1, "evaluate")


def test_no_paper_job_asks_for_more_than_its_partition_on_any_attempt():
    """The paper config's third attempts stay within the caps it sets (a third training attempt
    would ask for 480 GB and 144 h without them)."""
    for family in ("default", "data", "finetune", "merge", "evaluate"):
        spec = merged_resources(PAPER["resources"], family)
        for key, cap in (("mem_mb", "max_mem_mb"), ("runtime", "max_runtime")):
            assert spec.get(cap), f"paper.yaml sets no resources.{family}.{cap} (or default's)"
            for attempt in (1, 2, 3):
                assert on_retry(spec, key, attempt, family) <= spec[cap]
    finetune = merged_resources(PAPER["resources"], "finetune")
    assert on_retry(finetune, "mem_mb", 3, "finetune") < 3 * finetune["mem_mb"]


def test_gpu_jobs_ask_for_every_gpu_on_one_node_of_the_configured_kind():
    spec = {"threads": 32, "gpu": 4, "cpus_per_gpu": 8, "gpu_model": "a100",
            "constraint": "nvlink", "signal_seconds": 900}
    assert slurm_resources(spec) == {"gpu": 4, "nodes": 1, "cpus_per_gpu": 8,
                                     "gpu_model": "a100", "constraint": "nvlink",
                                     "slurm_extra": "--signal=USR1@900"}
    # cpus_per_gpu defaults to the threads; a CPU job asks for none of it.
    assert slurm_resources({"threads": 3, "gpu": 2})["cpus_per_gpu"] == 3
    assert slurm_resources({"threads": 3, "gpu": 0, "gpu_model": "a100"}) == {}


def test_workers_come_from_the_gpus_given():
    assert gpus_given({"SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1,2"}, 4) == 2
    assert gpus_given({"CUDA_VISIBLE_DEVICES": "1,3,5"}, 4) == 3
    assert gpus_given({"CUDA_VISIBLE_DEVICES": ""}, 4) == 0
    assert gpus_given({}, 4) == 4
    with pytest.raises(ResourceError, match="SLURM_GPUS_ON_NODE"):
        gpus_given({"SLURM_GPUS_ON_NODE": "two"}, 2)


# What a step program imports to open a network connection.
NETWORK = re.compile(
    r"^\s*(?:from|import) (?:huggingface_hub|urllib\.request|requests|http\.client)\b"
    r"|^\s*from datasets import .*\bload_dataset\b",
    re.M,
)
RULE = re.compile(r"^ *rule (\w+):\n(.*?)(?=^ *rule \w+:|\Z)", re.M | re.S)


def _rules() -> dict[str, tuple[bool, str | None]]:
    """rule -> (declared local, its step program) for every rule of the workflow."""
    found = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for match in RULE.finditer(smk.read_text()):
            body = match.group(2)
            script = re.search(r"^ *script:\n *\"\.\./(scripts/[\w/]+\.py)\"", body, re.M)
            local = re.search(r"^ *localrule: True$", body, re.M) is not None
            found[match.group(1)] = (local, script.group(1) if script else None)
    return found


def test_downloads_run_on_the_submitting_host_everything_else_as_jobs():
    """A rule runs on the host that runs Snakemake (never as a cluster job) exactly when its step
    program opens network connections: compute nodes may have no internet."""
    rules = _rules()
    assert set(rules) >= DOWNLOADS, f"rules found: {sorted(rules)}"
    networked = {rule for rule, (_, script) in rules.items()
                 if script and NETWORK.search((REPO / script).read_text())}
    local = {rule for rule, (is_local, _) in rules.items() if is_local}
    assert networked == DOWNLOADS, f"step programs that open connections: {sorted(networked)}"
    assert local == networked, f"local rules {sorted(local)}, downloads {sorted(networked)}"


def test_the_cluster_guide_states_what_paper_jobs_ask_for():
    """docs/cluster.md's table of what each job asks for holds config/paper.yaml's numbers."""
    guide = (REPO / "docs" / "cluster.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| `(\w+)` \| `([^`]*)` \| ([\d.]+) GB, (\d+) h \|$", guide, re.M)
    assert {family for family, *_ in rows} == {"finetune", "evaluate", "merge", "default"}, rows
    for family, flags, cap_gb, cap_h in rows:
        spec = merged_resources(PAPER["resources"], family)
        assert f"--mem {spec['mem_mb']} -t {spec['runtime']}" in flags, (family, flags)
        assert float(cap_gb) * 1000 == spec["max_mem_mb"], (family, cap_gb)
        assert int(cap_h) * 60 == spec["max_runtime"], (family, cap_h)
        gpus = f"--gpus=[model:]{spec['gpu']} --nodes=1" if spec["gpu"] else "--cpus-per-task"
        assert gpus in flags, (family, flags)
        signal = spec.get("signal_seconds")
        assert (f"--signal=USR1@{signal}" in flags) if signal else "--signal" not in flags
