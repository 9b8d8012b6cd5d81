"""Figure 1: scores along the ω grid per skill, as CSV and as a plot."""

from mtl.io import atomic_file
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.tables import omega_sweep, plot_omega_sweep

smk = snakemake
log = setup(smk)

with Step.from_snakemake(smk) as step:
    frame = omega_sweep(list(smk.input.sweeps), smk.input.baseline)
    with atomic_file(smk.output.artifact) as handle:
        frame.to_csv(handle, index=False)
    with atomic_file(smk.output.figure, "wb") as handle:
        plot_omega_sweep(frame, handle)
    log.info("\n%s", frame.to_string(index=False))
