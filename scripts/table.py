"""Write one of the paper's tables as CSV, from the evaluation folders only."""

from pathlib import Path

from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.tables import COLUMNS, table5

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk, config_keys=["evaluation", "merge"]) as step:
    frame = table5(smk.input.baseline, list(smk.input.merges), smk.params.suites,
                   smk.params.skills)
    with atomic_file(smk.output.artifact) as handle:
        frame.to_csv(handle, index=False)
    # Which file and which config keys each cell comes from (`mtl-audit --cells`).
    folders = {Path(f).name: Path(f) for f in [smk.input.baseline, *smk.input.merges]}
    for _, row in frame.iterrows():
        folder = folders[row["source"]]
        for suite in smk.params.suites:
            step.note_cell(row["model"], COLUMNS[suite], [str(folder / f"{suite}.json")],
                           config=["evaluation.suites"])
        for skill in smk.params.skills:
            if row[f"omega_{skill}"] == row[f"omega_{skill}"]:  # not NaN: the skill is merged
                step.note_cell(row["model"], f"omega_{skill}", [str(folder / "summary.json")],
                               config=["merge.method"])
    log.info("\n%s", frame.to_string(index=False))
