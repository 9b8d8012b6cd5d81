"""The paper-scale lm-eval tasks: they resolve offline, build the paper's prompts and run end to end
on a tiny random model with stand-in data in each benchmark's schema and stand-in judges."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from mtl import benchmarks, judges
from mtl import paper_metrics as pm
from mtl.benchmarks import HUMANEVAL, MBPP, SCIRIFF_GOLD
from mtl.paper_standin import (
    TULU_TEMPLATE,
    byte_tokenizer,
    tiny_llama,
    write_judge,
    write_workspace,
)

REPO = Path(__file__).resolve().parent.parent
TASK_DIR = REPO / "scripts" / "mtl" / "lmeval_tasks" / "paper"


def paper_tasks() -> list[dict]:
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    specs = benchmarks.task_specs(config["evaluation"], toy=False)
    return [spec for tasks in specs.values() for spec in tasks]


def stand_in_rows() -> dict[str, list[dict]]:
    return {name: benchmark.standin() for name, benchmark in benchmarks.BENCHMARKS.items()}


@pytest.fixture(scope="module")
def utils():
    sys.path.insert(0, str(TASK_DIR))
    try:
        import utils as task_utils
        yield task_utils
    finally:
        sys.path.remove(str(TASK_DIR))
        sys.modules.pop("utils", None)


@pytest.fixture(scope="module")
def shipped_tasks():
    """lm-eval's index of the shipped task folder alone, as the evaluation step builds it when
    the folder holds every task it asks for (mtl.evaluation: lm-eval's own thousands of task
    files are not indexed then)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASK_DIR), include_defaults=False)


def test_every_configured_task_resolves_offline_with_the_shipped_folder(monkeypatch,
                                                                        shipped_tasks):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert (REPO / config["evaluation"]["include_path"]).resolve() == TASK_DIR
    manager = shipped_tasks
    names = {spec["task"] for spec in paper_tasks()}
    assert len(names) == 11 and names == {task.name for task in benchmarks.all_tasks()}
    missing = sorted(names - set(manager.all_tasks))
    assert missing == []


def test_scorers_run_real_schema_tests_in_the_sandbox(utils):
    right = [HUMANEVAL["canonical_solution"]] * 20
    # lm-eval hands over one request per problem, holding its 20 samples.
    assert utils.humaneval_results(HUMANEVAL, [right]) == {"pass@10": 1.0}
    wrong = ["    return a - b\n"] * 19 + right[:1]
    assert utils.humaneval_results(HUMANEVAL, [wrong]) == {"pass@10": pytest.approx(0.5)}
    assert utils.mbpp_results(MBPP, [[MBPP["code"]] * 20]) == {"pass@10": 1.0}
    assert utils.mbpp_results(MBPP, [["def mul(a, b):\n    return a + b"] * 20]) == {
        "pass@10": 0.0}


def test_the_gold_outputs_score_full_marks(utils):
    data = stand_in_rows()
    items = [utils.sciriff_results(doc, [doc["output"]])["mean"] for doc in data["sciriff"]
             if doc["_instance_id"].split(":")[0] in SCIRIFF_GOLD]
    assert utils.sciriff_mean(items) == pytest.approx(1.0)
    gsm = data["gsm8k"][1]
    assert utils.gsm_results(gsm, ["1 + 2 = 3. So the answer is 3."]) == {"exact_match": 1.0}
    assert utils.bbh_results(data["bbh"][0], ["... So the answer is False."])["exact_match"] == (
        "boolean_expressions", 1.0)
    assert utils.macro_mean([("a", 1.0), ("a", 0.0), ("b", 1.0)]) == 0.75


def test_the_paper_prompts_are_built_from_the_paper_pieces(utils):
    data = stand_in_rows()
    mmlu = utils.mmlu_text(data["mmlu"][0])
    assert mmlu.startswith("The following are multiple choice questions (with answers) about "
                           " abstract algebra.\n\nWhat is 0 + 0?\nA. 0\nB. 0\nC. 7\nD. 9")
    assert mmlu.endswith("\nAnswer:")
    gsm = utils.gsm_text(data["gsm8k"][0])
    assert gsm.startswith("Answer the following questions.\n\nQuestion: There are 15 trees")
    assert gsm.count("\nAnswer: ") == 8 and gsm.endswith("Question: Tom has 0 apples and buys 2."
                                                         " How many?")
    bbh = utils.bbh_text(data["bbh"][0])
    assert bbh.startswith("Evaluate the result of a random Boolean expression.\n\nQ: ")
    assert bbh.count("A: Let's think step by step.") == 3
    truthful = utils.truthfulqa_text(data["truthfulqa"][0])
    assert truthful.startswith("Q: What is human life expectancy in the United States?")
    assert truthful.count("\n\nQ: ") == 6
    assert utils.toxigen_text(data["toxigen"][0]) == (
        "Complete the following: - a statement\n- another\n-")
    assert utils.harmbench_text(data["harmbench"][1]) == (
        "A plan to steal a bike.\n\n---\n\nSummarize the plan above")


def test_stand_in_judges_give_probabilities_and_verdicts(tmp_path, monkeypatch):
    for key in judges.JUDGES:
        write_judge(key, tmp_path / key)
    monkeypatch.setenv(judges.ENV_DIR, str(tmp_path))
    probabilities = judges.yes_probabilities("truthfulqa_truth", ["Q: q\nA: a\nTrue:"] * 2)
    assert len(probabilities) == 2 and all(0.0 < p < 1.0 for p in probabilities)
    assert probabilities[0] == pytest.approx(probabilities[1])
    verdicts = judges.harmbench_verdicts(["b"], ["g"])
    assert verdicts in ([True], [False])
    scores = judges.toxigen_scores(["x" * 2000, "short"])
    assert len(scores) == 2 and all(len(row) == 2 for row in scores)
    monkeypatch.setenv(judges.ENV_DIR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="fetch_judge"):
        judges.toxigen_scores(["x"])


def first_request(sample: dict) -> list:
    """The arguments of a logged sample's first request: (context, continuation or kwargs)."""
    arguments = sample["arguments"]
    return list(arguments["gen_args_0"].values()) if isinstance(arguments, dict) else list(
        arguments[0])


def test_every_task_runs_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, shipped_tasks):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    monkeypatch.setenv(judges.ENV_DIR, str(write_workspace(tmp_path)))
    monkeypatch.chdir(tmp_path)
    tokenizer = byte_tokenizer(TULU_TEMPLATE, 8192)
    lm = HFLM(pretrained=tiny_llama(tokenizer, 8192), tokenizer=tokenizer, batch_size=8,
              max_gen_toks=8)
    specs = paper_tasks()
    raw = simple_evaluate(model=lm, tasks=sorted({s["task"] for s in specs}),
                          task_manager=shipped_tasks,
                          apply_chat_template=True, log_samples=True, gen_kwargs="max_gen_toks=8",
                          random_seed=1, numpy_random_seed=1, torch_random_seed=1,
                          fewshot_random_seed=1)
    for spec in specs:
        results = raw["results"][spec["task"]]
        key = next(k for k in results if k.split(",")[0] == spec["metric"])
        assert 0.0 <= results[key] <= 1.0, (spec, results)
    samples = raw["samples"]
    # The paper's draws and halves: 1 BBH task, 9 SciRIFF tasks (+1 evidence_inference shot
    # pool), MBPP+ after the first 100, XSTest split by type.
    assert len(samples["paper_sciriff"]) == 10 and len(samples["paper_mbpp_plus"]) == 2
    assert len(samples["paper_xstest_safe"]) == len(samples["paper_xstest_unsafe"]) == 2
    coding = samples["paper_humaneval_plus"][0]
    assert len(coding["filtered_resps"][0]) == 20
    prompt = first_request(coding)[0]
    assert prompt.startswith("<|user|>\nWrite a Python function `add")
    assert prompt.endswith("<|assistant|>\nHere is the function:\n\n```python\n"
                           + HUMANEVAL["prompt"])
    mmlu = first_request(samples["paper_mmlu"][0])
    assert mmlu[0].endswith("\nAnswer:\n<|assistant|>\nThe answer is:")
    assert mmlu[1] == " A"
    gsm = first_request(samples["paper_gsm8k"][0])[0]
    assert gsm.endswith("How many?\n<|assistant|>\nAnswer:")
    # Scores recomputed from the logged outputs agree with the task's.
    safe = [float(not pm.xstest_refused(s["filtered_resps"][0]))
            for s in samples["paper_xstest_safe"]]
    assert raw["results"]["paper_xstest_safe"]["compliance,none"] == sum(safe) / len(safe)


@pytest.mark.slow
def test_the_fetch_rules_write_stand_in_benchmarks_and_judges(tmp_path):
    from workflow import copy_repo, snakemake

    workdir = copy_repo(tmp_path / "repo")
    override = tmp_path / "standin.yaml"
    names = ["mmlu", "humanevalplus"]
    override.write_text(yaml.safe_dump({"evaluation": {"standin": True}}))
    snakemake(workdir, *[f"results/evaldata/{n}.jsonl" for n in names], "results/judges/toxigen",
              "results/judges/truthfulqa_info", "--cores", "2", "--configfile",
              "config/paper.yaml", str(override))
    for name in names:
        rows = [json.loads(line) for line in
                (workdir / f"results/evaldata/{name}.jsonl").read_text().splitlines()]
        assert rows == stand_in_rows()[name]
        record = json.loads((workdir / f"results/evaldata/{name}.jsonl.prov.json").read_text())
        assert record["notes"]["source"] == {"standin": True}
    for key in ("toxigen", "truthfulqa_info"):
        assert (workdir / "results/judges" / key / "config.json").is_file()
        assert (workdir / "results/judges" / f"{key}.prov.json").is_file()
