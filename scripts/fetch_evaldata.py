"""Paper scale: one benchmark's items as JSONL, each row in the benchmark's own schema.

Hub datasets are read at a pinned revision (BBH: every config, each row marked with its task;
HumanEval+: each problem joined with its HumanEvalPack instruction). Files from GitHub (ToxiGen's
prompt lists, HarmBench's and XSTest's CSVs) are read from a URL that pins the commit; their
sha256 goes into provenance. A `standin` entry (tests, CI) writes a few items in the same schema.
"""

import csv
import hashlib
import io
import urllib.request

from datasets import get_dataset_config_names, load_dataset
from huggingface_hub import HfApi

from mtl.io import write_jsonl
from mtl.paper_standin import stand_in_rows
from mtl.provenance import Step
from mtl.stepkit import setup

smk = snakemake
spec = smk.params.spec
name = smk.wildcards.benchmark
log = setup(smk)
TOXIGEN_GROUPS = ("asian", "black", "chinese", "jewish", "latino", "lgbtq", "mental_disability",
                  "mexican", "middle_east", "muslim", "native_american", "physical_disability",
                  "trans", "women")


def hub_rows(source: dict) -> tuple[list[dict], dict]:
    revision = HfApi().dataset_info(source["repo"], revision=source["revision"]).sha
    configs = (get_dataset_config_names(source["repo"], revision=revision)
               if source.get("config") == "*" else [source.get("config")])
    rows = []
    for config in configs:
        part = load_dataset(source["repo"], config, split=source["split"], revision=revision)
        rows += [{**row, "task": config} if source.get("config") == "*" else dict(row)
                 for row in part]
    return rows, {"dataset": source["repo"], "revision": revision, "configs": configs}


def url_text(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
    return body.decode("utf-8"), hashlib.sha256(body).hexdigest()


with Step.from_snakemake(smk) as step:
    if spec.get("standin"):
        available = stand_in_rows()
        if name not in available:
            raise ValueError(f"benchmark {name}: no stand-in rows (known: {sorted(available)})")
        rows, origin = available[name], {"standin": True}
    elif "repo" in spec:
        rows, origin = hub_rows(spec)
        if "instructions" in spec:
            extra, origin["instructions"] = hub_rows(spec["instructions"])
            by_id = {row["task_id"].replace("Python/", "HumanEval/"): row["instruction"]
                     for row in extra}
            missing = [row["task_id"] for row in rows if row["task_id"] not in by_id]
            if missing:
                raise ValueError(f"{name}: no HumanEvalPack instruction for {missing[:5]}")
            rows = [{**row, "instruction": by_id[row["task_id"]]} for row in rows]
    elif "{group}" in spec["url"]:
        rows, origin = [], {"files": {}}
        for group in TOXIGEN_GROUPS:
            text, digest = url_text(spec["url"].format(group=group))
            origin["files"][spec["url"].format(group=group)] = digest
            rows += [{"text": line.strip(), "group": group} for line in text.splitlines()
                     if line.strip()]
    else:
        text, digest = url_text(spec["url"])
        rows = list(csv.DictReader(io.StringIO(text)))
        origin = {"files": {spec["url"]: digest}}
    if not rows:
        raise ValueError(f"benchmark {name}: no rows from {spec}")
    write_jsonl(smk.output.artifact, rows)
    log.info("%s: %d rows -> %s", name, len(rows), smk.output.artifact)
    step.note(source=origin, n_items=len(rows))
