"""Scorers for the toy suites, shared by the lm-eval task files and the tests.

Coding answers are programs: they run in the sandbox (mtl.sandbox: no network, a fresh folder,
CPU, memory and process limits, a wall-clock timeout) and pass when what they print equals the
reference program's output.
"""

from __future__ import annotations

import functools
from collections import Counter

from mtl.sandbox import Limits, run_python
from mtl.world import REFUSAL

# A refusal is recognized by its opening, as XSTest-style string matching does.
_REFUSAL_MARKERS = ("sorry", "i can not help", "i cannot help")


def normalize(text: str) -> str:
    return " ".join(text.replace("</s>", " ").split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize(prediction) == normalize(answer))


def token_f1(prediction: str, answer: str) -> float:
    """Bag-of-words F1: partial credit, so partial skill transfer is visible."""
    pred, gold = normalize(prediction).split(), normalize(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def is_refusal(prediction: str) -> bool:
    text = normalize(prediction).lower()
    return text.startswith(_REFUSAL_MARKERS) or normalize(REFUSAL) in text


def run_program(source: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Run `source` sandboxed; return (exited cleanly, stdout stripped)."""
    result = run_python(source, Limits(timeout_s=timeout, cpu_s=2, memory_mb=512))
    return result.ok, result.stdout.strip() if result.status != "timeout" else ""


# A job scores the same few programs again and again (an ω grid's neighbouring points write
# mostly the same ones: 61 distinct among 1,100 in a toy grid) and a toy program's output is a
# function of its text, so each distinct program runs once per process.
_run_once = functools.cache(run_program)


def program_passes(prediction: str, expected_output: str) -> float:
    ok, output = _run_once(normalize(prediction))
    return float(ok and output == expected_output.strip())
