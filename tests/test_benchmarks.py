"""The benchmark registry (mtl.benchmarks): what configs derive from it, the checks a fetch makes,
the cost table computed from its counts, and a new benchmark added as one task file plus one
entry, planned and evaluated by the stand-in workflow."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mtl import benchmarks, eval_cost, judges

REPO = Path(__file__).resolve().parent.parent


def test_configs_name_registered_benchmarks_and_get_their_tasks_and_judges():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["evaluation"]
    names = benchmarks.configured(paper, toy=False)
    assert names == list(benchmarks.BENCHMARKS)
    specs = benchmarks.task_specs(paper, toy=False)
    assert specs["safety"] == [
        {"task": "paper_toxigen", "metric": "toxic", "invert": True},
        {"task": "paper_harmbench", "metric": "attack_success", "invert": True},
        {"task": "paper_xstest_unsafe", "metric": "compliance", "invert": True}]
    assert benchmarks.judges(["xstest", "mmlu"]) == []
    assert benchmarks.judges(names) == list(judges.JUDGES)
    assert benchmarks.configured({"benchmarks": ["bbh"]}, toy=False) == ["bbh"]
    assert benchmarks.configured({}, toy=True) == []
    custom = {"tasks": {"general": [{"task": "mmlu", "metric": "acc"}]}}
    assert benchmarks.task_specs(custom, toy=False) == custom["tasks"]
    with pytest.raises(ValueError, match=r"unknown \['bbq'\]; registered"):
        benchmarks.configured({"benchmarks": ["bbq"]}, toy=False)
    with pytest.raises(ValueError, match="both name tasks"):
        benchmarks.configured({**custom, "benchmarks": ["bbh"]}, toy=False)
    with pytest.raises(ValueError, match="benchmarks are paper scale"):
        benchmarks.configured({"benchmarks": ["bbh"]}, toy=True)


def test_fetch_specs_carry_the_pin_and_the_counted_rows():
    sciriff = benchmarks.fetch_spec("sciriff", standin=False)
    assert sciriff["revision"] == "eddf83df1ab4acf1ead5b81898dd4c7e7450050e"
    assert sciriff["rows"] == 30736
    assert benchmarks.fetch_spec("toxigen", standin=False)["parts"][0] == "asian"
    assert benchmarks.fetch_spec("humanevalplus", standin=False)["join"]["repo"] == (
        "bigcode/humanevalpack")
    assert benchmarks.fetch_spec("mmlu", standin=True) == {"standin": True}
    assert judges.fetch_spec("harmbench", standin=False)["repo"] == (
        "cais/HarmBench-Llama-2-13b-cls")
    with pytest.raises(ValueError, match="unknown judge 'gpt4'"):
        judges.fetch_spec("gpt4", standin=False)


def test_a_fetch_with_other_rows_than_counted_fails_naming_both():
    benchmarks.check_rows("gsm8k", 1319, 1319, "openai/gsm8k")
    with pytest.raises(ValueError, match=r"gsm8k: 1318 rows from openai/gsm8k@abc, the registry "
                                         r"\(mtl.benchmarks\) counted 1319"):
        benchmarks.check_rows("gsm8k", 1318, 1319, "openai/gsm8k@abc")


def test_a_url_on_a_branch_is_held_to_the_bytes_its_first_fetch_locked(tmp_path):
    pinned = "https://raw.githubusercontent.com/o/r/475f10bf0a3d6a9dfb174b6de1a38afbfdff98a5/x.csv"
    assert benchmarks.check_url_digest(pinned, "aa", tmp_path) == "commit"
    assert not list(tmp_path.rglob("*"))
    branch = "https://raw.githubusercontent.com/o/r/main/data/x.csv"
    assert benchmarks.check_url_digest(branch, "aa", tmp_path) == "locked now"
    lock = tmp_path / "url" / "raw.githubusercontent.com" / "o/r/main/data/x.csv"
    assert lock.read_text() == "aa\n"
    assert benchmarks.check_url_digest(branch, "aa", tmp_path) == "lock"
    with pytest.raises(ValueError, match=r"sha256 bb, but .*x.csv locked aa"):
        benchmarks.check_url_digest(branch, "bb", tmp_path)
    assert lock.read_text() == "aa\n"


def test_a_registry_entry_naming_an_unknown_judge_is_refused():
    entry = benchmarks.Benchmark(
        "twice", benchmarks.Source(url="https://x/y.csv"), rows=1, counted="-",
        tasks=(benchmarks.Task("paper_x", "general", "acc", scored=1, judges=("gpt4",)),),
        standin=list)
    with pytest.raises(ValueError, match=r"unknown judges \['gpt4'\]"):
        benchmarks.register(entry)
    with pytest.raises(ValueError, match="'mmlu' is registered twice"):
        benchmarks.register(benchmarks.BENCHMARKS["mmlu"])


def test_the_cost_table_in_the_docs_is_computed_from_the_registry():
    text = (REPO / "docs" / "paper-evaluation.md").read_text()
    marker = "<!-- eval-cost:"
    arguments, _, after = text.split(marker, 1)[1].partition("-->")
    documented = after.lstrip("\n").split("\n\n", 1)[0] + "\n"
    from eval_cost import main

    assert documented == main(shlex.split(arguments))
    # Counted, not assumed: coding generates 20 samples an item, MBPP+ scores 378 - 100 items.
    load = {row.task: row for row in eval_cost.loads(benchmarks.BENCHMARKS)}
    assert load["paper_mbpp_plus"].generations == 278 * 20
    assert load["paper_toxigen"].tokens == 7000 * 512
    assert load["paper_mmlu"].generations == 0 and load["paper_mmlu"].choices == 4


def test_the_cost_takes_any_backend_throughput():
    fast, slow = eval_cost.Backend.parse("a=10000*"), eval_cost.Backend.parse("b=1000")
    assert fast.measured and not slow.measured
    table = eval_cost.render([fast, slow], ["gsm8k"])
    assert "a (10,000 tok/s, measured): h" in table and "b (1,000 tok/s, assumed): h" in table
    # 200 questions x 512 tokens: 102,400 tokens.
    assert "| 0.10 | 0.00 | 0.03 |" in table
    with pytest.raises(ValueError, match="expected name=tokens_per_s"):
        eval_cost.Backend.parse("fast")


# ---- a new benchmark: one task file, one registry entry ---------------------------------------

NEW_TASK = """\
task: paper_arith
dataset_path: json
dataset_kwargs:
  data_files:
    test: results/evaldata/arith.jsonl
test_split: test
output_type: generate_until
doc_to_text: question
doc_to_target: answer
num_fewshot: 0
generation_kwargs:
  until: ["\\n"]
  do_sample: false
  temperature: 0.0
  max_gen_toks: 8
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
NEW_ENTRY = """

register(Benchmark(
    "arith", Source(repo="example/arith", config="default", split="test"), rows=3,
    counted="three stand-in sums",
    tasks=(Task("paper_arith", "general", "exact_match", scored=3),),
    standin=lambda: [{"question": f"{i} + {i} =", "answer": str(2 * i)} for i in range(3)]))
"""


@pytest.mark.slow
def test_a_new_benchmark_is_one_task_file_and_one_entry(tmp_path):
    from workflow import copy_repo, env, planned_jobs, snakemake

    workdir = copy_repo(tmp_path / "repo")
    (workdir / "scripts/mtl/lmeval_tasks/paper/paper_arith.yaml").write_text(NEW_TASK)
    registry = workdir / "scripts/mtl/benchmarks.py"
    registry.write_text(registry.read_text() + NEW_ENTRY)
    config = ["--configfile", "config/standin.yaml"]

    # Planned: its data fetched and read by every evaluation of the stand-in's table 5.
    planned = planned_jobs(workdir, "--cores", "1", *config, "--", "results/table5.csv")
    assert ("fetch_evaldata", "benchmark=arith") in planned
    snakemake(workdir, "--cores", "1", *config, "--", "results/evaldata/arith.jsonl")
    rows = (workdir / "results/evaldata/arith.jsonl").read_text().splitlines()
    assert [json.loads(row)["answer"] for row in rows] == ["0", "2", "4"]

    # Evaluated: the General suite now holds its task, through the evaluator the jobs run.
    program = textwrap.dedent("""
        import json, sys
        from mtl import benchmarks
        from mtl.evaluation import Evaluator, TaskSpec
        from mtl.paper_standin import TULU_TEMPLATE, byte_tokenizer, tiny_llama
        specs = benchmarks.task_specs({}, toy=False)
        assert specs["general"][-1]["task"] == "paper_arith", specs
        tokenizer = byte_tokenizer(TULU_TEMPLATE, 1024)
        out = Evaluator(tiny_llama(tokenizer, 1024), tokenizer,
                        {"general": [TaskSpec(**specs["general"][-1])]},
                        benchmarks.TASK_DIR, batch_size=8, max_gen_toks=8, limit=None,
                        seed=1).run()
        print(json.dumps(out["general"]["tasks"]["paper_arith"]))
    """)
    done = subprocess.run([sys.executable, "-c", program], cwd=workdir, capture_output=True,
                          text=True, env={**env(), "PYTHONPATH": str(workdir / "scripts")},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 3 and 0.0 <= result["score"] <= 1.0
