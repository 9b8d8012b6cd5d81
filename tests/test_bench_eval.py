"""scripts/bench_eval.py runs (CPU, tiny width) and prints both backends' rows and their ratio."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_eval.py"
sys.path.insert(0, str(SCRIPT.parent))


def test_drawn_requests_respect_each_benchmarks_limit_and_the_context():
    from bench_eval import WORKLOAD, draw

    requests = draw(2000, 0, 4096)
    assert all(1 <= out <= max(b.limit for b in WORKLOAD.values()) for _, out in requests)
    assert all(prompt + out <= 4096 for prompt, out in requests)
    # Benchmarks in proportion to their generations: ToxiGen's 7,000 outnumber GSM8K's 200.
    assert sum(out > 1024 for _, out in requests) < len(requests) // 10


@pytest.mark.slow
def test_bench_eval_runs_on_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--requests", "12"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()
            if line.startswith(("static ", "continuous ")) and "tokens/s" in line}
    assert set(rows) == {"static", "continuous"}
    for row in rows.values():
        assert float(row[1]) > 0 and float(row[3]) > 0  # seconds, tokens/s
    ratio = float(done.stdout.split("continuous / static throughput:")[1].split()[0])
    assert ratio == pytest.approx(float(rows["continuous"][3]) / float(rows["static"][3]),
                                  rel=0.05)
