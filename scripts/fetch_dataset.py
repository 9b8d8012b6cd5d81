"""Paper scale: load one dataset through `datasets` and write it as the toy world's chat JSONL.

From the hub at a pinned revision (the config's commit, or the one config/hub-lock holds: mtl.pins),
or (the stand-in, or a site's own copy in the hub's schema) from local files with `data_files`
and a builder name as `path` (json, csv, parquet). The rows left after the filters must be the
rows the config expects (`expect`), or nothing is written.
"""

from datasets import load_dataset

from mtl.io import write_jsonl
from mtl.pins import LOCK_DIR, resolve
from mtl.provenance import Step
from mtl.sources import check_expected, normalize
from mtl.stepkit import setup

smk = snakemake
spec = smk.params.spec
name = smk.wildcards.dataset
entry = smk.config["data"]["general"] if name == "general" else smk.config["data"]["skills"][name]
# The seed is in the params only where the download samples with it (a per-source cap).
seed = spec.get("seed")
log = setup(smk, seed=seed)
# Builder options the hub card asks for (WildJailbreak's TSV: delimiter, keep_default_na).
options = spec.get("load_options") or {}

with Step.from_snakemake(smk, seed=seed) as step:
    if spec.get("data_files"):
        files = list(smk.input)
        rows = load_dataset(spec["path"], spec["name"], data_files=files, split=spec["split"],
                            **options)
        origin = ", ".join(files)
        step.note(local={"builder": spec["path"], "files": files})
    else:
        from huggingface_hub import HfApi

        from mtl.preflight import check_token

        def lookup(revision: str | None) -> str:
            return HfApi().dataset_info(spec["path"], revision=revision).sha

        revision, pinned_by = resolve("dataset", spec["path"], spec["revision"], LOCK_DIR,
                                      lookup)
        log.info("%s at revision %s (%s)", spec["path"], revision, pinned_by)
        check_token(spec["path"], HfApi().dataset_info(spec["path"], revision=revision).gated)
        rows = load_dataset(spec["path"], spec["name"], split=spec["split"], revision=revision,
                            **options)
        origin = f"{spec['path']}@{revision}"
        step.note(hub={"dataset": spec["path"], "revision": revision, "pinned_by": pinned_by})
    chats = normalize(rows, spec, origin=origin)
    if not chats:
        raise ValueError(f"{origin}: no rows left after the source filters")
    check_expected(len(chats), entry.get("expect"), f"{origin} (data {name})")
    write_jsonl(smk.output.artifact, chats)
    log.info("%d of %d rows -> %s", len(chats), len(rows), smk.output.artifact)
    step.note(n_examples=len(chats), expected=entry.get("expect"))
