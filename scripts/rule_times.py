"""Time per rule of a workflow run, from the benchmark files Snakemake wrote for every job.

    python scripts/rule_times.py [results/benchmarks] [--wall SECONDS]

Every rule of the workflow declares `benchmark: results/benchmarks/<rule>/<job>.tsv`; Snakemake
writes one row per job (wall seconds `s`, `cpu_time`, peak `max_rss`). This prints, per rule,
the number of jobs, their summed wall and CPU seconds, the mean and the longest job, and each
rule's share of all job-seconds, as a Markdown table, most expensive first. `--wall` (the run's
own wall time, measured outside, e.g. with `time`) adds how busy the cores were:
job-seconds / (wall × cores).

CPU time is Snakemake's periodic sampling of the job's process tree, so it misses the end of each
job and short-lived children (the coding suite's sandboxed programs): CPU below wall is not all
idle time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def read_benchmarks(root: Path) -> pd.DataFrame:
    """One row per job: rule, job (the file's path below the rule), wall s, cpu s, max_rss MB."""
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        rule = path.relative_to(root).parts[0]
        try:
            frame = pd.read_csv(path, sep="\t")
        except (OSError, ValueError) as err:
            raise SystemExit(f"{path}: unreadable benchmark file ({err})") from None
        missing = {"s", "cpu_time", "max_rss"} - set(frame.columns)
        if frame.empty or missing:
            raise SystemExit(f"{path}: not a Snakemake benchmark (no rows, or no {missing})")
        last = frame.iloc[-1]  # a rerun job appends a row; the last is the run that counts
        rows.append({"rule": rule, "job": str(path.relative_to(root / rule).with_suffix("")),
                     "wall": float(last["s"]), "cpu": float(last["cpu_time"]),
                     "max_rss": float(last["max_rss"])})
    if not rows:
        raise SystemExit(f"{root}: no benchmark files (*.tsv)")
    return pd.DataFrame(rows)


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Jobs, summed and mean wall, summed CPU, the longest job and the share of job-seconds."""
    table = jobs.groupby("rule").agg(
        jobs=("job", "size"), wall=("wall", "sum"), cpu=("cpu", "sum"),
        mean=("wall", "mean"), longest=("wall", "max"), max_rss=("max_rss", "max"))
    table["share"] = table["wall"] / table["wall"].sum()
    return table.sort_values("wall", ascending=False).reset_index()


def markdown(table: pd.DataFrame) -> str:
    lines = ["| rule | jobs | wall s | CPU s | mean s | longest s | peak RSS MB | share |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['rule']} | {r['jobs']} | {r['wall']:.0f} | {r['cpu']:.0f} | "
                     f"{r['mean']:.1f} | {r['longest']:.1f} | {r['max_rss']:.0f} | "
                     f"{100 * r['share']:.0f} % |")
    total = table[["jobs", "wall", "cpu"]].sum()
    lines.append(f"| **all** | {int(total['jobs'])} | {total['wall']:.0f} | {total['cpu']:.0f} | "
                 "| | | 100 % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--wall", type=float, help="the run's wall time in seconds")
    parser.add_argument("--cores", type=int, default=2, help="the run's --cores (with --wall)")
    args = parser.parse_args(argv)
    table = per_rule(read_benchmarks(args.root))
    print(markdown(table))
    if args.wall:
        busy = table["wall"].sum() / (args.wall * args.cores)
        print(f"\n{table['wall'].sum():.0f} job-seconds in {args.wall:.0f} s of wall time on "
              f"{args.cores} cores: the cores ran jobs {100 * busy:.0f} % of the time")


if __name__ == "__main__":
    sys.exit(main())
