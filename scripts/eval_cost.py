"""Print the paper-scale evaluation cost table (mtl.eval_cost) for the given backends.

    python scripts/eval_cost.py --backend "HF generate=2000" --backend "vLLM=10000" --fixed-h 0.5

Each --backend is `name=generated tokens/s on one GPU` (a trailing `*` marks a measurement);
--fixed-h adds the hours no generation backend changes (log-likelihood tasks, judges, code
execution) to every point. docs/paper-evaluation.md shows the table with the line that made it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtl.eval_cost import Backend, render


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", required=True, type=Backend.parse)
    parser.add_argument("--fixed-h", type=float, default=0.0)
    args = parser.parse_args(argv)
    return render(args.backend, fixed_h=args.fixed_h)


if __name__ == "__main__":
    print(main(), end="")
