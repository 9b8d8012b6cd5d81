"""Input and params helpers of rules/evaluate.smk and rules/paper_eval.smk (included before
this file: its rules reach these helpers through lambdas, called once all is read)."""

from mtl import benchmarks as benchmark_registry
from mtl import judges as judge_registry

# Paper scale: the configured benchmarks and each suite's lm-eval tasks, from the benchmark
# registry (or the config's own `tasks`).
BENCHMARK_NAMES = benchmark_registry.configured(config["evaluation"], TOY)
EVAL_TASKS = benchmark_registry.task_specs(config["evaluation"], TOY)


def model_seed(wildcards):
    """The seed of evaluation target {model}: seed-<N>/… is seed N, θ_pre and θ_G the base."""
    folder, _, rest = wildcards.model.partition("/")
    return int(folder.removeprefix("seed-")) if rest else config["seed"]


def eval_params(seed):
    """What changes an evaluation: the tasks and generation settings, seed and numerics.
    `seed`: a function of the job's wildcards."""
    return {
        "suites": SUITES,
        "tasks": EVAL_TASKS,
        "batch_size": config["evaluation"]["batch_size"],
        "max_gen_toks": config["evaluation"]["max_gen_toks"],
        "limit": config["evaluation"]["limit"],
        # Only when set, so configs without it keep their jobs' params (no reruns).
        **(
            {"gen_kwargs": config["evaluation"]["gen_kwargs"]}
            if config["evaluation"]["gen_kwargs"]
            else {}
        ),
        # Likewise: the default backend leaves every committed evaluation's params as they were.
        **(
            {"backend": config["evaluation"]["backend"]}
            if config["evaluation"]["backend"] != "static"
            else {}
        ),
        "include_path": config["evaluation"]["include_path"],
        "sandbox": config["evaluation"]["sandbox"],
        "seed": seed,
        "numerics": NUMERICS,
    }


def suite_data():
    """The toy suites read the world's eval files; paper suites are lm-eval's own tasks."""
    return [f"results/world/eval/{suite}.jsonl" for suite in SUITES] if TOY else []


# Table 3's held-out ω is chosen on development sets: the toy world draws one per skill suite;
# no paper benchmark's development split is wired in, so there the tables leave that row out.
DEV_SPLIT = TOY


def dev_dir(eval_id):
    """An evaluation on the development sets, named as its test-set evaluation."""
    return f"results/evals/dev/{eval_id}"


def dev_eval_params():
    """A merge's evaluation params on the development sets of the skills it merges."""
    return {
        **eval_params(seed=wildcard_seed),
        "suites": lambda wc: [skill for skill, _ in parse_skillset(wc.skillset)],
    }


def dev_suite_data(wildcards):
    return [dev_suite_path(skill) for skill, _ in parse_skillset(wildcards.skillset)]


def paper_eval_inputs():
    """Judges and benchmark files of the paper tasks, as inputs of evaluation jobs."""
    if TOY:
        return {}
    return {
        "judges": [
            f"results/judges/{key}"
            for key in benchmark_registry.judges(BENCHMARK_NAMES)
        ],
        "evaldata": [f"results/evaldata/{name}.jsonl" for name in BENCHMARK_NAMES],
    }


def judge_fetch_spec(wildcards):
    """What fetch_judge downloads (or, with evaluation.standin, writes)."""
    return judge_registry.fetch_spec(wildcards.judge, config["evaluation"]["standin"])


def benchmark_fetch_spec(wildcards):
    """What fetch_evaldata downloads (or, with evaluation.standin, writes)."""
    return benchmark_registry.fetch_spec(
        wildcards.benchmark, config["evaluation"]["standin"]
    )
