"""Table 3: per skill, CFT vs. RT vs. PTM against θ_G, with each procedure's training steps;
as CSV and as a plot of General vs. skill score."""

from pathlib import Path

from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.tables import omega_sweep, plot_procedures, table3, training_steps

smk = snakemake
log = setup(smk)
skills = list(smk.params.skills)


with Step.from_snakemake(smk, config_keys=["evaluation", "merge", "training"]) as step:
    procedures = {
        skill: {"CFT": cft, "RT": rt, "heuristic": heuristic, "grid": grid}
        for skill, cft, rt, heuristic, grid in zip(
            skills, smk.input.cft, smk.input.rt, smk.input.heuristic, smk.input.grid, strict=True
        )
    }
    costs = {
        skill: {"CFT": training_steps(cft), "RT": training_steps(rt), "PTM": training_steps(ptm)}
        for skill, cft, rt, ptm in zip(
            skills, smk.input.cft_model, smk.input.rt_model, smk.input.ptm_model, strict=True
        )
    }
    frame = table3(smk.input.baseline, procedures, costs, list(smk.params.suites))
    with atomic_file(smk.output.artifact) as handle:
        frame.to_csv(handle, index=False)
    with atomic_file(smk.output.figure, "wb") as handle:
        plot_procedures(frame, omega_sweep(list(smk.input.grid), smk.input.baseline), handle)
    # Which evaluation file each score comes from (`mtl-audit --cells`).
    folders = {Path(f).name: Path(f) for group in procedures.values() for f in group.values()}
    folders[Path(smk.input.baseline).name] = Path(smk.input.baseline)
    for _, row in frame.iterrows():
        folder = folders[row["source"]]
        for column in ("General", "Skill", "ExRef"):
            suite = row["skill"] if column == "Skill" else column.lower()
            if column in row and suite in smk.params.suites:
                step.note_cell(f"{row['skill']}: {row['procedure']}", column,
                               [str(folder / f"{suite}.json")], config=["evaluation.suites"])
    log.info("\n%s", frame.to_string(index=False))
