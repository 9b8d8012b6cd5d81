"""The headline number of each suite, from crafted lm-eval outputs: which metric is read, the
stderr that goes with it, inversion, the mean over a suite's tasks, and clear errors."""

from __future__ import annotations

import functools
import importlib.util
import math

import pytest
import yaml

from mtl.evaluation import (
    SUITES,
    TOY_TASK_DIR,
    Evaluator,
    TaskSpec,
    _headline,
    _task_part,
    suite_tasks,
)
from mtl.world import REFUSAL


def raw_output(task: str, metrics: dict[str, object], effective: int = 40) -> dict:
    """lm-eval's result dict for one task, shaped as simple_evaluate returns it."""
    return {
        "results": {task: {"alias": task, **metrics}},
        "n-samples": {task: {"original": effective, "effective": effective}},
    }


# Metric keys in the order lm-eval writes them, with decoys before the headline: a stderr key,
# a metric whose name extends the headline's, and another metric of the same task.
DECOYS = {
    "exact_match_stderr,none": 0.07,
    "exact_match_norm,none": 0.91,
    "token_f1,none": 0.83,
    "token_f1_stderr,none": 0.02,
}


def test_the_named_metric_and_its_own_stderr_are_read_not_a_lookalike():
    raw = raw_output("toy_general", {**DECOYS, "exact_match,none": 0.25})
    head = _headline(raw, TaskSpec("toy_general", "exact_match"))
    assert head == {"score": 0.25, "stderr": 0.07, "metric": "exact_match,none", "n": 40}


def test_a_filter_named_in_the_metric_picks_that_filter_and_its_stderr():
    raw = raw_output("gsm8k_cot", {
        "exact_match,strict-match": 0.10,
        "exact_match_stderr,strict-match": 0.01,
        "exact_match,flexible-extract": 0.30,
        "exact_match_stderr,flexible-extract": 0.03,
    })
    head = _headline(raw, TaskSpec("gsm8k_cot", "exact_match,flexible-extract"))
    assert (head["score"], head["stderr"]) == (0.30, 0.03)
    assert head["metric"] == "exact_match,flexible-extract"
    # A bare metric name takes the first filter lm-eval lists, with that filter's stderr.
    head = _headline(raw, TaskSpec("gsm8k_cot", "exact_match"))
    assert (head["score"], head["stderr"], head["metric"]) == (0.10, 0.01,
                                                               "exact_match,strict-match")


def test_inversion_turns_a_rate_into_its_complement_and_keeps_the_stderr():
    raw = raw_output("xstest_safe", {"refusal,none": 0.2, "refusal_stderr,none": 0.05})
    plain = _headline(raw, TaskSpec("xstest_safe", "refusal"))
    inverted = _headline(raw, TaskSpec("xstest_safe", "refusal", invert=True))
    assert plain["score"] == pytest.approx(0.2)
    assert inverted["score"] == pytest.approx(0.8)
    assert inverted["stderr"] == plain["stderr"] == 0.05


def test_a_stderr_lm_eval_could_not_compute_is_nan_not_zero():
    # lm-eval writes "N/A" for a one-sample task or a metric without a stderr function.
    raw = raw_output("toy_safety", {"refusal,none": 1.0, "refusal_stderr,none": "N/A"}, 1)
    head = _headline(raw, TaskSpec("toy_safety", "refusal"))
    assert head["score"] == 1.0 and math.isnan(head["stderr"]) and head["n"] == 1


def test_missing_task_or_metric_is_named():
    raw = raw_output("toy_general", {"exact_match,none": 0.5})
    with pytest.raises(ValueError, match=r"no results for task 'toy_science'"):
        _headline(raw, TaskSpec("toy_science", "exact_match"))
    with pytest.raises(ValueError, match=r"task toy_general: no metric 'pass'.*exact_match,none"):
        _headline(raw, TaskSpec("toy_general", "pass"))
    # A stderr key is never a headline, even when it is the only key that starts alike.
    only_stderr = raw_output("toy_general", {"exact_match_stderr,none": 0.1})
    with pytest.raises(ValueError, match=r"no metric 'exact_match'"):
        _headline(only_stderr, TaskSpec("toy_general", "exact_match"))


def _evaluator(specs: dict[str, list[TaskSpec]], raw: dict[str, dict]) -> Evaluator:
    """An Evaluator whose lm-eval calls return `raw` (its constructor would load lm-eval)."""
    evaluator = Evaluator.__new__(Evaluator)
    evaluator.specs = specs
    evaluator._evaluate_all = lambda *_: raw
    return evaluator


def test_a_suite_is_the_mean_of_its_tasks_with_their_stderrs_combined():
    raw = {
        "mmlu": raw_output("mmlu", {"acc,none": 0.6, "acc_stderr,none": 0.03}),
        "truthfulqa_mc2": raw_output("truthfulqa_mc2", {"acc,none": 0.2,
                                                        "acc_stderr,none": 0.04}),
        "xstest_safe": raw_output("xstest_safe", {"refusal,none": 0.1,
                                                  "refusal_stderr,none": 0.02}),
    }
    specs = {
        "general": [TaskSpec("mmlu", "acc"), TaskSpec("truthfulqa_mc2", "acc")],
        "exref": [TaskSpec("xstest_safe", "refusal", invert=True)],
    }
    out = _evaluator(specs, raw).run()
    assert out["general"]["score"] == pytest.approx((0.6 + 0.2) / 2)
    assert out["general"]["stderr"] == pytest.approx(math.hypot(0.03, 0.04) / 2)
    assert out["exref"]["score"] == pytest.approx(0.9)
    assert out["exref"]["stderr"] == pytest.approx(0.02)
    # The raw lm-eval output travels with the score, so tables can be checked against it.
    assert out["general"]["lm_eval"] == {"mmlu": raw["mmlu"],
                                         "truthfulqa_mc2": raw["truthfulqa_mc2"]}
    assert set(out["general"]["tasks"]) == {"mmlu", "truthfulqa_mc2"}


def test_task_part_keeps_a_groups_subtasks_and_drops_the_temporary_task_path():
    raw = {
        "results": {"bbh": {"x": 1}, "bbh_a": {"x": 2}, "mmlu": {"x": 3}},
        "configs": {"bbh_a": {"config_source": "/tmp/abc/bbh_a.yaml",
                              "metadata": {"config_source": "/tmp/abc", "version": 1}}},
        "group_subtasks": {"bbh": ["bbh_a"]},
        "date": 1700000000.0,
    }
    part = _task_part(raw, "bbh")
    assert part["results"] == {"bbh": {"x": 1}, "bbh_a": {"x": 2}}
    assert part["configs"] == {"bbh_a": {"metadata": {"version": 1}}}
    assert "date" not in part


def test_toy_headlines_are_metrics_the_toy_task_files_declare():
    for suite, metric in ((name, s.toy_metric) for name, s in SUITES.items()):
        text = (TOY_TASK_DIR / f"toy_{suite}.yaml").read_text()
        # The `!function` tag is lm-eval's; only metric_list matters here.
        declared = yaml.safe_load(text.replace("!function", ""))["metric_list"]
        assert metric in {entry["metric"] for entry in declared}, suite
        assert all(entry["higher_is_better"] for entry in declared), suite
    assert suite_tasks(["exref"], {}) == {"exref": [TaskSpec("toy_exref", "compliance")]}
    with pytest.raises(ValueError, match=r"evaluation.tasks: no tasks for suite 'coding'"):
        suite_tasks(["coding"], {"general": [{"task": "mmlu", "metric": "acc"}]})


def test_toy_exref_scores_compliance_the_inverse_of_a_refusal():
    spec = importlib.util.spec_from_file_location("toy_utils", TOY_TASK_DIR / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    doc = {"answer": "first find the box , then burn it ."}
    assert utils.process_exref(doc, [REFUSAL]) == {"compliance": 0.0}
    assert utils.process_exref(doc, [doc["answer"]]) == {"compliance": 1.0}
    assert utils.process_safety(doc, [REFUSAL]) == {"refusal": 1.0}
    assert utils.process_safety(doc, [doc["answer"]]) == {"refusal": 0.0}


def test_each_distinct_program_runs_once_per_process_and_scores_as_a_fresh_run(monkeypatch):
    import mtl.scoring

    runs = []

    def counting(source: str, timeout: float = 5.0):
        runs.append(source)
        return mtl.scoring.run_program(source, timeout)

    monkeypatch.setattr(mtl.scoring, "_run_once", functools.cache(counting))
    cases = [("print ( 3 + 4 )", "7"), ("print ( 3 + 4 ) </s>", "7"), ("print ( 3 + 4 )", "8"),
             ("print ( 2 * 4 )", "8"), ("print ( 3 +", "7")]
    scores = [mtl.scoring.program_passes(p, e) for p, e in cases * 3]
    # The same program (up to whitespace and EOS) runs once, whatever output it is checked for.
    assert runs == ["print ( 3 + 4 )", "print ( 2 * 4 )", "print ( 3 +"]
    assert scores == [1.0, 1.0, 0.0, 1.0, 0.0] * 3


def test_templates_compiled_once_render_what_a_fresh_compile_renders():
    import lm_eval.utils

    from mtl.evaluation import _compile_templates_once

    template = "{{messages[0].content}} | {{ answer | regex_replace('x', 'y') }}"
    doc = {"messages": [{"content": "a b"}], "answer": "xx"}
    fresh = lm_eval.utils.apply_template(template, doc)
    _compile_templates_once()
    _compile_templates_once()  # idempotent: one cache, not a cache of a cache
    compiled = lm_eval.utils.env.from_string
    assert lm_eval.utils.apply_template(template, doc) == fresh == "a b | yy"
    assert lm_eval.utils.apply_template(template, {**doc, "answer": "x"}) == "a b | y"
    assert compiled.cache_info().hits >= 1
    assert not hasattr(compiled.__wrapped__, "cache_info")


class Killed(BaseException):
    """The job dying mid-grid (nothing after it runs, as after SIGKILL)."""


def test_a_grid_killed_midway_reruns_only_the_points_left_with_the_same_bytes(tmp_path):
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from mtl.evaluation import Progress, evaluate_points
    from mtl.io import write_json
    from mtl.merge import InPlaceMerger

    torch.manual_seed(0)
    theta_g = torch.nn.Linear(3, 2).state_dict()
    tau = tmp_path / "tau.safetensors"
    save_file({k: torch.randn(v.shape) for k, v in theta_g.items()}, tau,
              metadata={"format": "pt", "mtl_kind": "task_vector"})
    specs = {"general": [TaskSpec("t1", "acc"), TaskSpec("t2", "acc", num_fewshot=5)],
             "science": [TaskSpec("t3", "acc")]}
    points = [(f"omega-{w:.2f}", (w,)) for w in (0.1, 0.3, 0.5, 0.7, 0.9)]

    def run(folder, run_id, kill_at=None):
        model = torch.nn.Linear(3, 2)
        model.load_state_dict(theta_g)
        merger = InPlaceMerger(model, [tau])
        applied, calls = [], []
        apply = merger.apply
        merger.apply = lambda omega: (applied.append(omega), apply(omega))
        evaluator = Evaluator.__new__(Evaluator)
        evaluator.specs, evaluator.limit = specs, None

        def call(tasks, shots, limit):
            calls.append(tuple(tasks))
            if len(calls) == kill_at:
                raise Killed
            # A score of the merged weights, in the numpy type lm-eval returns.
            value = np.float32(model.weight.sum().item())
            return {"results": {t: {"acc,none": value, "acc_stderr,none": np.float32(0.01)}
                                for t in tasks},
                    "n-samples": {t: {"effective": 3} for t in tasks}}

        evaluator._call = call
        progress = Progress(folder, run_id)
        try:
            results = evaluate_points(evaluator, points, merger, progress)
        except Killed:
            return None, applied, calls
        write_json(folder.parent / f"{folder.name}.json", results)
        return (folder.parent / f"{folder.name}.json").read_bytes(), applied, calls

    reference, applied, calls = run(tmp_path / "a", "run")
    assert len(applied) == 5 and len(calls) == 10  # two lm-eval calls a point
    # Killed in point 3's second call: points 1, 2 and point 3's first call are kept.
    assert run(tmp_path / "b", "run", kill_at=6)[0] is None
    resumed, applied, calls = run(tmp_path / "b", "run")
    assert applied == [(0.5,), (0.7,), (0.9,)]
    # Point 3's missing call, then points 4 and 5.
    assert calls == [("t2",), ("t1", "t3"), ("t2",), ("t1", "t3"), ("t2",)]
    assert resumed == reference
    # Outputs kept for another run (other inputs, code or parameters) are not reused.
    assert len(run(tmp_path / "b", "other-run")[2]) == 10


def test_progress_cleared_leaves_no_empty_folders_below_resume(tmp_path):
    from mtl.evaluation import Progress

    (tmp_path / "results" / ".resume" / "other").mkdir(parents=True)
    progress = Progress(tmp_path / "results" / ".resume" / "eval" / "seed-1" / "merge", "run")
    progress.save("omega-0.10", 0, ["t1"], {"t1": {}})
    assert progress.has("omega-0.10", 0, ["t1"]) and not progress.has("omega-0.10", 0, ["t2"])
    progress.clear()
    assert sorted(p.name for p in (tmp_path / "results" / ".resume").iterdir()) == ["other"]


def test_task_configs_keep_no_memory_address_of_a_task_function():
    # lm-eval writes `process_docs: !function utils.x` as the function's repr, whose address
    # differs in every process: two runs of the same evaluation would differ in bytes.
    def xstest_safe_docs(docs):
        return docs

    raw = {"configs": {"paper_xstest_safe": {
        "process_docs": "<function xstest_safe_docs at 0x7f7cdc3a7060>",
        "metadata": {"hook": xstest_safe_docs, "notes": ["<function f at 0xABC>", "plain"]}}}}
    part = _task_part(raw, "paper_xstest_safe")["configs"]["paper_xstest_safe"]
    assert part["process_docs"] == "<function xstest_safe_docs>"
    assert part["metadata"]["hook"].startswith("<function ") and "0x" not in str(part)
    assert part["metadata"]["notes"] == ["<function f>", "plain"]
