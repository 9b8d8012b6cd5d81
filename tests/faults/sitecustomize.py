"""Fault injection for tests/test_slurm.py: hold a training job at its first checkpoint.

Python imports ``sitecustomize`` at start-up from the first folder on sys.path that has one, so
this file acts only in processes whose PYTHONPATH names tests/faults/ — the test puts it on the
SLURM run's environment alone, never on the local reference run's. Even there it does nothing
unless MTL_TEST_HOLD_DIR is set.

With MTL_TEST_HOLD_DIR set, the first checkpoint of each of the first MTL_TEST_HOLDS (default 1)
SLURM jobs that train writes ``<MTL_TEST_HOLD_DIR>/held-<i>.json`` ({"job": SLURM job id, "step":
..., "resume_dir": ...}, i = 0, 1, ... in the order the jobs got there) once the checkpoint is on
disk, then sleeps, so that the test can have the scheduler stop that job (preempt and requeue it,
or cancel it) at a known point of a training run that would otherwise finish in seconds. A job is
held once: its other processes, the same job requeued (same id) and its retry (a new id, but no
hold left) pass straight through. Training itself is not changed, so the resumed run must still
match an uninterrupted one.
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


def _claim(path: Path) -> bool:
    """Create `path` if nobody has (O_EXCL: one process wins, across jobs and nodes)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _hold_once(save):
    hold_dir = Path(os.environ["MTL_TEST_HOLD_DIR"])
    holds = int(os.environ.get("MTL_TEST_HOLDS", "1"))

    def save_then_hold(resume_dir, run_id, step, *args, **kwargs):
        save(resume_dir, run_id, step, *args, **kwargs)
        job = os.environ.get("SLURM_JOB_ID")
        if not _claim(hold_dir / f"job-{job}.lock"):
            return
        slot = next((i for i in range(holds) if _claim(hold_dir / f"slot-{i}.lock")), None)
        if slot is None:
            return
        facts = {"job": job, "step": step, "resume_dir": str(resume_dir)}
        tmp = hold_dir / f"held-{slot}.json.tmp"
        tmp.write_text(json.dumps(facts))
        tmp.replace(hold_dir / f"held-{slot}.json")  # the test polls for this: it appears whole
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
