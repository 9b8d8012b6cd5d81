"""Paper scale: one benchmark's items as JSONL, each row in the benchmark's own schema.

The source is the benchmark's registry entry (mtl.benchmarks). Hub datasets are read at a commit:
the registry's, or the one config/hub-lock holds (the first fetch writes it; mtl.pins). BBH: every
config, each row marked with its task; HumanEval+: each problem joined with its HumanEvalPack
instruction. Files from GitHub (ToxiGen's prompt lists, HarmBench's and XSTest's CSVs) are read
from a URL; one that names no commit is held to the sha256 its first fetch locked. The rows must
be the rows the registry counted, or nothing is written. With `evaluation.standin` the
registry's stand-in rows are written instead.
"""

import csv
import hashlib
import io
import urllib.request

from datasets import get_dataset_config_names, load_dataset
from huggingface_hub import HfApi

from mtl.benchmarks import BENCHMARKS, check_rows, check_url_digest
from mtl.io import write_jsonl
from mtl.pins import LOCK_DIR, resolve
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
spec = smk.params.spec
name = smk.wildcards.benchmark
log = setup(smk)


def hub_rows(source: dict) -> tuple[list[dict], dict]:
    def lookup(revision: str | None) -> str:
        return HfApi().dataset_info(source["repo"], revision=revision).sha

    revision, pinned_by = resolve("dataset", source["repo"], source.get("revision"), LOCK_DIR,
                                  lookup)
    log.info("%s at %s (%s)", source["repo"], revision, pinned_by)
    every = source.get("config") == "*"
    configs = (get_dataset_config_names(source["repo"], revision=revision) if every
               else [source.get("config")])
    rows = []
    for config in configs:
        part = load_dataset(source["repo"], config, split=source["split"], revision=revision)
        rows += [{**row, "task": config} if every else dict(row) for row in part]
    return rows, {"dataset": source["repo"], "revision": revision, "pinned_by": pinned_by,
                  "configs": configs}


def url_text(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
    digest = hashlib.sha256(body).hexdigest()
    check_url_digest(url, digest, LOCK_DIR)
    return body.decode("utf-8"), digest


def joined(rows: list[dict], extra: list[dict]) -> list[dict]:
    by_id = {row["task_id"].replace("Python/", "HumanEval/"): row["instruction"] for row in extra}
    missing = [row["task_id"] for row in rows if row["task_id"] not in by_id]
    if missing:
        raise ValueError(f"{name}: no HumanEvalPack instruction for {missing[:5]}")
    return [{**row, "instruction": by_id[row["task_id"]]} for row in rows]


with Step.from_snakemake(smk) as step:
    if spec.get("standin"):
        rows, origin = BENCHMARKS[name].standin(), {"standin": True}
    elif "repo" in spec:
        rows, origin = hub_rows(spec)
        if "join" in spec:
            extra, origin["join"] = hub_rows(spec["join"])
            rows = joined(rows, extra)
    elif spec.get("parts"):
        rows, origin = [], {"files": {}}
        for part in spec["parts"]:
            url = spec["url"].format(part=part)
            text, origin["files"][url] = url_text(url)
            rows += [{"text": line.strip(), "group": part} for line in text.splitlines()
                     if line.strip()]
    else:
        text, digest = url_text(spec["url"])
        rows = list(csv.DictReader(io.StringIO(text)))
        origin = {"files": {spec["url"]: digest}}
    if not rows:
        raise ValueError(f"benchmark {name}: no rows from {spec}")
    check_rows(name, len(rows), spec.get("rows"), origin)
    write_jsonl(smk.output.artifact, rows)
    log.info("%s: %d rows -> %s", name, len(rows), smk.output.artifact)
    step.note(source=origin, n_items=len(rows))
