"""scripts/bench_train.py runs (CPU, tiny shape) and prints both loops' rows."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"


@pytest.mark.slow
def test_bench_train_runs_on_the_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny",
                           "--work", str(tmp_path)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("  ")[0]: line.split()[-4:] for line in done.stdout.splitlines()
            if line.startswith(("project (", "plain ("))}
    assert set(rows) == {"project (FSDP2, grouped micro-batches)",
                         "plain (no sharding, fused AdamW)"}
    for tokens_per_s, mfu, padding, peak in rows.values():
        assert float(tokens_per_s) > 0 and mfu == "n/a" and peak == "n/a"
        assert 0 <= float(padding.rstrip("%")) < 100
    grouped, plain = (float(rows[k][2].rstrip("%")) for k in sorted(rows, reverse=True))
    assert grouped < plain  # length grouping pads less than batch order
    assert "project / plain throughput" in done.stdout
