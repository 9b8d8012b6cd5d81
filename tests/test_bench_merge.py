"""scripts/bench_merge.py --methods runs at tiny size: each method over the ω grid, against
mergekit-yaml on the configs the engine wrote, with the ratio per method."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_merge.py"
ROW = re.compile(r"^\| (\w+) \| ([\d.]+) \| (\d+) \| ([\d.]+|—) \| ([\d.]+|—) \|$")


@pytest.mark.slow
def test_bench_merge_times_each_method_against_mergekit(tmp_path: Path) -> None:
    # SCE has a mergekit config at ω = 1 only (one of the 3 points), TSV-M none; TIES one per
    # point, of which --mergekit-runs 2 times two.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--methods", "sce,tsv_m,ties",
         "--mergekit-runs", "2", "--workdir", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {m.group(1): m.groups()[1:] for line in done.stdout.splitlines()
            if (m := ROW.match(line))}
    assert set(rows) == {"sce", "tsv_m", "ties"}, done.stdout
    engine, runs, mergekit, ratio = rows["sce"]
    assert runs == "1" and rows["ties"][1] == "2"
    # From the printed (rounded) seconds: the ratio agrees to the rounding.
    assert float(ratio) == pytest.approx(float(engine) / float(mergekit), rel=0.05)
    assert rows["tsv_m"][1:] == ("0", "—", "—")
    assert not (tmp_path / "bench").exists()  # removed unless --keep


def test_bench_merge_refuses_an_unknown_method(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--methods", "slerp",
         "--workdir", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0 and "unknown merge method 'slerp'" in done.stderr


def test_mergekit_runs_are_spread_over_the_grid() -> None:
    spec = importlib.util.spec_from_file_location("bench_merge", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    grid = list(range(11))
    assert bench.spread(grid, 3) == [0, 5, 10]
    assert bench.spread(grid, 1) == [10] and bench.spread(grid, None) == grid
    assert bench.spread(grid, 20) == grid and bench.spread([], 3) == []
