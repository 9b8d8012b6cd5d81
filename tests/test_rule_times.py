"""scripts/rule_times.py: per-rule sums of Snakemake's benchmark files, bad files named."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rule_times.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(root: Path, job: str, *runs: tuple[float, float]) -> None:
    path = root / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{s}\t0:00:00\t100\t0\t0\t0\t0\t0\t0\t{cpu}\n"
                                     for s, cpu in runs))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_sums_per_rule_most_expensive_first_last_row_of_a_rerun(tmp_path):
    _bench(tmp_path, "train_regime/seed-1/ptm-a", (30, 25))
    _bench(tmp_path, "train_regime/seed-2/ptm-a", (50, 40))
    _bench(tmp_path, "evaluate_model/general", (99, 9), (10, 8))  # rerun: the last row counts
    done = _run(str(tmp_path), "--wall", "60")
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    cells = {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}
    assert list(cells) == ["train_regime", "evaluate_model", "**all**"]
    assert cells["train_regime"][:5] == ["2", "80", "65", "40.0", "50.0"]
    assert cells["evaluate_model"][:3] == ["1", "10", "8"]
    assert cells["**all**"][:3] == ["3", "90", "73"]
    assert "90 job-seconds in 60 s of wall time on 2 cores" in done.stdout
    assert "75 %" in done.stdout


def test_a_file_that_is_not_a_benchmark_is_named(tmp_path):
    bad = tmp_path / "train_general" / "train_general.tsv"
    bad.parent.mkdir()
    bad.write_text("wall\n3\n")
    done = _run(str(tmp_path))
    assert done.returncode != 0 and str(bad) in done.stderr
    empty = tmp_path / "none"
    empty.mkdir()
    assert "no benchmark files" in _run(str(empty)).stderr
