"""Fault injection for tests/test_slurm.py: hold a training job at its first checkpoint.

Python imports ``sitecustomize`` at start-up from the first folder on sys.path that has one, so
this file acts only in processes whose PYTHONPATH names tests/faults/ — the test puts it on the
SLURM run's environment alone, never on the local reference run's. Even there it does nothing
unless MTL_TEST_HOLD_DIR is set.

With MTL_TEST_HOLD_DIR set, the first training run (in any job) that saves a checkpoint writes
``<MTL_TEST_HOLD_DIR>/held.json`` ({"job": SLURM job id, "step": ..., "resume_dir": ...}) once the
checkpoint is on disk, then sleeps, so that the test can have the scheduler kill that job at a
known point of a training run that would otherwise finish in under a second. Every later
checkpoint, the retried job's included, passes straight through: exactly one hold per test run.
Training itself is not changed, so the resumed run must still match an uninterrupted one.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

HOLD_SECONDS = 600  # ends the hold if nobody kills the job; the test then fails on "not resumed"


def _hold_once(save):
    hold_dir = Path(os.environ["MTL_TEST_HOLD_DIR"])

    def save_then_hold(resume_dir, run_id, step, *args, **kwargs):
        save(resume_dir, run_id, step, *args, **kwargs)
        try:  # O_EXCL: only the first checkpoint of the whole test run is held
            os.close(os.open(hold_dir / "held.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        facts = {"job": os.environ.get("SLURM_JOB_ID"), "step": step, "resume_dir": str(resume_dir)}
        tmp = hold_dir / "held.json.tmp"
        tmp.write_text(json.dumps(facts))
        tmp.replace(hold_dir / "held.json")  # the test polls for this file: it appears whole
        print(f"fault injection: holding at checkpoint step {step} for the test", flush=True)
        time.sleep(HOLD_SECONDS)

    return save_then_hold


class _PatchTraining(importlib.abc.MetaPathFinder):
    """Wraps mtl.training._save_checkpoint right after the module is first executed."""

    def find_spec(self, name, path, target=None):
        if name != "mtl.training":
            return None
        sys.meta_path.remove(self)  # one module, once; also lets the lookup below proceed
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            module._save_checkpoint = _hold_once(module._save_checkpoint)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("MTL_TEST_HOLD_DIR"):
    sys.meta_path.insert(0, _PatchTraining())
