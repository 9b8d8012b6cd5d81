"""scripts/bench_eval.py runs (CPU, tiny width) and prints both backends' rows and their ratio."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_eval.py"
sys.path.insert(0, str(SCRIPT.parent))


def test_drawn_requests_follow_the_registrys_tasks_and_limits():
    from bench_eval import draw

    from mtl.benchmarks import BENCHMARKS
    from mtl.eval_cost import loads

    limits = {load.task: load.max_new_tokens for load in loads(list(BENCHMARKS))}
    requests = draw(3000, 0, 4096)
    assert all(1 <= out <= limits[task] for task, _, out in requests)
    assert all(prompt + out <= 4096 for _, prompt, out in requests)
    counts = {task: sum(t == task for t, _, _ in requests) for task in limits}
    # Tasks in proportion to their generations: ToxiGen's 7,000 outnumber GSM8K's 200, and the
    # likelihood task (MMLU) generates nothing.
    assert counts["paper_toxigen"] > 10 * counts["paper_gsm8k"] > 0
    assert counts["paper_mmlu"] == 0


@pytest.mark.slow
def test_bench_eval_runs_on_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--requests", "12"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()
            if line.startswith(("static ", "continuous ")) and line.endswith("tokens/s")}
    assert set(rows) == {"static", "continuous"}
    for row in rows.values():
        assert float(row[1]) > 0 and float(row[3]) > 0  # seconds, tokens/s
    ratio = float(done.stdout.split("continuous / static throughput:")[1].split()[0])
    assert ratio == pytest.approx(float(rows["continuous"][3]) / float(rows["static"][3]),
                                  rel=0.05)
    # The cost table at the measured rates, not marked as a GPU measurement.
    assert "| **one point**" in done.stdout and "measured" not in done.stdout
