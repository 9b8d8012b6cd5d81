"""What every step program does first: logging to its Snakemake log, threads, seeds."""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path


def check_library(smk) -> None:
    """Fail unless this mtl is the one beside the step program (rules/common.smk says why)."""
    here = Path(__file__).resolve().parent
    expected = Path(smk.scriptdir).resolve() / "mtl"
    if here != expected:
        raise RuntimeError(
            f"rule {smk.rule}: the step program is from {smk.scriptdir} but the library mtl was "
            f"imported from {here}, another copy installed in this Python environment. Run "
            f"through this checkout's Snakefile (it puts {expected.parent} first on PYTHONPATH), "
            "or reinstall this checkout with `pip install -e .`."
        )


def setup(smk, seed: int | None = None) -> logging.Logger:
    """Log to the job's log file and to stderr; pin threads and seeds for determinism."""
    check_library(smk)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if smk.log:
        os.makedirs(os.path.dirname(str(smk.log[0])) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(str(smk.log[0]), mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    threads = max(1, int(smk.threads))
    # Snakemake already sets OMP_NUM_THREADS for the job; tokenizers has its own pool.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch = sys.modules.get("torch")  # only steps that already use torch pay for it
    if torch is not None:
        torch.set_num_threads(threads)
        if seed is not None:
            torch.manual_seed(seed)
    if seed is not None:
        random.seed(seed)
    log = logging.getLogger(f"mtl.{smk.rule}")

    def log_failure(kind, error, trace) -> None:
        # The rule's log must say why the job failed, not only the terminal.
        log.critical("%s failed: %s", smk.rule, error, exc_info=(kind, error, trace))

    sys.excepthook = log_failure
    return log

