"""Outputs are replaced, or taken as built, only when this workflow wrote everything in them
(mtl.replacing: foreign_outputs, check_replaceable).

Included last, when every rule is defined. Both checks run in the main Snakemake process only:
SLURM jobs parse this file again, and the main process checked before it submitted them.
"""

from mtl.replacing import check_replaceable, foreign_outputs, recorded, refusal

# Snakemake takes an existing output as built (a target that exists is "Nothing to be done"):
# so every path that matches an output of a rule must have been written by this workflow.
if workflow.is_main_process:
    FOREIGN = foreign_outputs(
        {
            Path(f.constant_prefix()).parts[0]
            for rule in workflow.rules
            for f in rule.output
        },
        [f.regex() for rule in workflow.rules for f in recorded(rule.output)],
    )
    if FOREIGN:
        raise refusal(FOREIGN, "not taken as built")


onstart:
    # Before the first job starts: Snakemake deletes each job's existing outputs as it starts it.
    check_replaceable(
        [f for job in workflow.dag.needrun_jobs() for f in recorded(job.output)],
        "no job was started",
    )
