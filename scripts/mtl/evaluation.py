"""Evaluation through lm-eval, in process, on a loaded model object.

A fresh `lm_eval` process costs ~25 s of imports; inside one process a re-evaluation costs ~2 s,
so a job loads lm-eval once and evaluates every suite — and every merge grid point — in place.

Each suite is one or more lm-eval tasks with a headline metric. The toy suites are shipped in
`lmeval_tasks/toy/` with a placeholder for their data file; paper-scale suites name lm-eval's own
tasks in the config (`evaluation.tasks`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import pickle
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtl.io import atomic_file, write_json
from mtl.suites import SUITES

log = logging.getLogger(__name__)

TOY_TASK_DIR = Path(__file__).parent / "lmeval_tasks" / "toy"


# Keys of lm-eval's result dict that are the same on every rerun; timings, dates and machine
# details stay out of the artifact (they are in its provenance record).
_STABLE_KEYS = ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                "samples")


@dataclass(frozen=True)
class TaskSpec:
    task: str
    metric: str
    num_fewshot: int | None = None
    limit: int | None = None
    invert: bool = False


def suite_tasks(suites: Sequence[str], configured: Mapping[str, list[dict]]) -> dict[str,
                                                                                     list[TaskSpec]]:
    """The lm-eval tasks of each suite: from the config, or the shipped toy task."""
    specs = {}
    for suite in suites:
        if configured:
            if suite not in configured:
                raise ValueError(f"config evaluation.tasks: no tasks for suite {suite!r}")
            specs[suite] = [TaskSpec(**entry) for entry in configured[suite]]
        else:
            if suite not in SUITES:
                raise ValueError(f"config evaluation.suites: unknown suite {suite!r}; known: "
                                 f"{sorted(SUITES)}")
            specs[suite] = [TaskSpec(f"toy_{suite}", SUITES[suite].toy_metric)]
    return specs


@contextlib.contextmanager
def toy_task_dir(data_files: Mapping[str, str], max_gen_toks: int) -> Iterator[Path]:
    """A temporary copy of the toy task folder with each suite's data file filled in.

    Data paths are written relative to the working directory, so lm-eval's saved configs (part
    of the eval artifact) are the same wherever the repository is checked out.
    """
    with tempfile.TemporaryDirectory(prefix="mtl-tasks-") as tmp:
        target = Path(tmp)
        shutil.copy(TOY_TASK_DIR / "utils.py", target / "utils.py")
        for suite, data in data_files.items():
            text = (TOY_TASK_DIR / f"toy_{suite}.yaml").read_text()
            rel = os.path.relpath(data) if os.path.isabs(data) else data
            text = text.replace("__DATA_FILE__", rel).replace("__MAX_GEN_TOKS__",
                                                               str(max_gen_toks))
            (target / f"toy_{suite}.yaml").write_text(text)
        yield target


def check_model_folder(path: str | os.PathLike) -> None:
    """Fail clearly when a folder is not a Hugging Face model (before lm-eval's own errors)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; expected a model folder")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: not a model folder (no config.json)")
    weights = list(folder.glob("*.safetensors"))
    if not weights:
        raise ValueError(f"{folder}: not a model folder (no *.safetensors weights)")


class Evaluator:
    """lm-eval, imported once, evaluating a (possibly mutating) model object on every suite."""

    def __init__(
        self,
        model,
        tokenizer,
        specs: Mapping[str, list[TaskSpec]],
        include_path: Path | str | None,
        batch_size: int | str,
        max_gen_toks: int,
        limit: int | None,
        seed: int,
        gen_kwargs: Mapping[str, object] | None = None,
        backend: str = "static",
    ) -> None:
        import lm_eval.evaluator

        from mtl.generation import lm_class

        # lm-eval probes the environment after every call (pip list, nvidia-smi, ...: seconds
        # each, for every grid point); the provenance record already holds the environment.
        lm_eval.evaluator.add_env_info = lambda results: None
        _compile_templates_once()
        self.specs = specs
        self.limit = limit
        self.seed = seed
        # Laid over every generating task's generation_kwargs (a smoke run's small budgets).
        self.gen_kwargs = dict(gen_kwargs) if gen_kwargs else None
        names = {spec.task for tasks in specs.values() for spec in tasks}
        self.task_manager = _task_manager(include_path, names)
        neutral_generation_config(model)
        # The backend changes how tokens are generated, never what lm-eval does with them.
        backend_args = {} if backend == "static" else {"seed": seed}
        self.lm = lm_class(backend)(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                                    max_gen_toks=max_gen_toks, **backend_args)

    def _evaluate_all(self, point: str = "", progress: Progress | None = None
                      ) -> dict[str, dict]:
        """One lm-eval call per (few-shot, limit) setting; returns each task's raw output.

        With `progress`, each call's outputs are kept as it finishes and a call kept by an
        earlier run of the same job is not made again. The unit is the call, not the task:
        lm-eval seeds its generators per call, so a task sampled beside others in one call
        would draw other numbers alone.
        """
        raw_by_task = {}
        for index, ((shots, limit), names) in enumerate(self._calls().items()):
            kept = None if progress is None else progress.load(point, index, names)
            if kept is None:
                raw = self._call(names, shots, limit)
                kept = {name: _task_part(raw, name) for name in names}
                if progress is not None:
                    progress.save(point, index, names, kept)
            raw_by_task.update(kept)
        return raw_by_task

    def _calls(self) -> dict[tuple[int | None, int | None], list[str]]:
        """The tasks of each lm-eval call, by (few-shot, limit)."""
        groups: dict[tuple, list[str]] = defaultdict(list)
        for tasks in self.specs.values():
            for spec in tasks:
                groups[(spec.num_fewshot, spec.limit or self.limit)].append(spec.task)
        return groups

    def all_kept(self, point: str, progress: Progress) -> bool:
        """Whether an earlier run kept every call of `point` (no need to set its ω)."""
        return all(progress.has(point, index, names)
                   for index, names in enumerate(self._calls().values()))

    def _call(self, tasks: list[str], shots: int | None, limit: int | None) -> dict:
        from lm_eval import simple_evaluate

        return simple_evaluate(
            model=self.lm,
            tasks=tasks,
            num_fewshot=shots,
            limit=limit,
            gen_kwargs=self.gen_kwargs,
            task_manager=self.task_manager,
            apply_chat_template=True,
            log_samples=True,
            random_seed=self.seed,
            numpy_random_seed=self.seed,
            torch_random_seed=self.seed,
            fewshot_random_seed=self.seed,
        )

    def run(self, point: str = "", progress: Progress | None = None) -> dict[str, dict]:
        """Evaluate every suite; return {suite: {score, stderr, tasks, lm_eval}}.

        `point` names the merge grid point (or "" for a model as it is) in `progress`.
        """
        raw = self._evaluate_all(point, progress)
        out = {}
        for suite, tasks in self.specs.items():
            per_task = {spec.task: _headline(raw[spec.task], spec) for spec in tasks}
            scores = [entry["score"] for entry in per_task.values()]
            errors = [entry["stderr"] for entry in per_task.values()]
            out[suite] = {
                "suite": suite,
                "score": sum(scores) / len(scores),
                # Tasks are independent samples: the mean's stderr combines theirs.
                "stderr": math.sqrt(sum(e * e for e in errors)) / len(errors),
                "tasks": per_task,
                "lm_eval": {spec.task: raw[spec.task] for spec in tasks},
            }
            log.info("%s: %.3f ± %.3f", suite, out[suite]["score"], out[suite]["stderr"])
        return out


def neutral_generation_config(model) -> None:
    """Generation follows the task's settings only: the model's own `generation_config` (a
    checkpoint's sampling defaults, say Llama-2's top_p 0.9, or a max_new_tokens that would
    override lm-eval's max_length) is replaced by one holding just its special-token ids, so
    what a task leaves unset takes transformers' fixed defaults, the same for every model."""
    from transformers import GenerationConfig

    own = model.generation_config
    model.generation_config = GenerationConfig(
        bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id)


def evaluate_points(evaluator: Evaluator, points: Sequence[tuple[str, Sequence[float] | None]],
                    merger, progress: Progress | None = None) -> dict[str, dict]:
    """{point: suites' results} of every (name, ω) point, the merger (if any) set to each ω
    in turn; a point whose every lm-eval call `progress` kept is neither merged nor run."""
    results = {}
    for index, (key, omega) in enumerate(points, start=1):
        if merger is not None and (progress is None or not evaluator.all_kept(key, progress)):
            log.info("point %d/%d at ω = %s", index, len(points), list(omega))
            merger.apply(omega)
        results[key] = evaluator.run(key, progress)
    return results


class Progress:
    """What an evaluation job finished, kept so that a rerun (after a preemption or a time
    limit) computes only the rest.

    One file per grid point and lm-eval call, written atomically; a pickle, so the outputs come
    back with the exact types lm-eval returned (a JSON round trip would turn numpy float32
    scores into text) and the rerun writes the same bytes. `run_id` identifies what is
    evaluated (inputs, code, parameters): outputs kept for another run_id are dropped.
    """

    def __init__(self, folder: Path, run_id: str) -> None:
        self.folder = Path(folder)
        marker = self.folder / "run.json"
        if marker.exists() and json.loads(marker.read_text()).get("run_id") != run_id:
            log.warning("dropping evaluation progress of another run in %s", self.folder)
            shutil.rmtree(self.folder)
        if not marker.exists():
            write_json(marker, {"run_id": run_id})

    def _path(self, point: str, call: int) -> Path:
        return self.folder / (point or "model") / f"call-{call}.pkl"

    def _read(self, point: str, call: int, tasks: list[str]) -> dict | None:
        path = self._path(point, call)
        if not path.exists():
            return None
        with open(path, "rb") as handle:
            kept = pickle.load(handle)
        return kept if kept["tasks"] == tasks else None

    def has(self, point: str, call: int, tasks: list[str]) -> bool:
        return self._read(point, call, tasks) is not None

    def load(self, point: str, call: int, tasks: list[str]) -> dict | None:
        """The outputs of this call if an earlier run kept them, else None."""
        kept = self._read(point, call, tasks)
        if kept is not None:
            log.info("point %r, lm-eval call %d: kept from an earlier run", point or "model",
                     call)
        return None if kept is None else kept["raw"]

    def save(self, point: str, call: int, tasks: list[str], raw: dict) -> None:
        with atomic_file(self._path(point, call), "wb") as handle:
            pickle.dump({"tasks": tasks, "raw": raw}, handle)

    def clear(self) -> None:
        """The job's output is written: what it kept is garbage (and so are folders it leaves
        empty, up to the one named .resume)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if ".resume" not in self.folder.parts:
            return
        for parent in self.folder.parents:
            if parent.name == ".resume" or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()


def _compile_templates_once() -> None:
    """lm-eval compiles a task's Jinja templates anew for every document and every call (a
    second per grid point); a compiled template renders the same text, so compile each once."""
    import lm_eval.utils

    env = lm_eval.utils.env
    if not hasattr(env.from_string, "cache_info"):
        env.from_string = functools.lru_cache(maxsize=1024)(env.from_string)


def _task_manager(include_path: Path | str | None, names: set[str]):
    """lm-eval's task index. Indexing lm-eval's own task files costs 30-90 s a job on a busy
    CPU, so when the include folder holds every task asked for, only that folder is indexed."""
    from lm_eval.tasks import TaskManager

    if include_path:
        own = TaskManager(include_path=str(include_path), include_defaults=False)
        if names <= set(own.all_tasks):
            return own
    return TaskManager(include_path=str(include_path) if include_path else None)


def _task_part(raw: dict, task: str) -> dict:
    """lm-eval's output restricted to one task (a group keeps its subtasks' entries)."""
    names = {task, *raw.get("group_subtasks", {}).get(task, [])}
    part = {key: {name: value for name, value in raw[key].items() if name in names}
            for key in _STABLE_KEYS if isinstance(raw.get(key), dict)}
    for config in part.get("configs", {}).values():
        # The task file's location is a temporary folder: it would make reruns differ.
        config.pop("config_source", None)
        config.get("metadata", {}).pop("config_source", None)
    if "configs" in part:
        part["configs"] = _without_addresses(part["configs"])
    return part


# lm-eval writes a task's functions (`process_docs: !function utils.x`) as their repr, which
# holds the function's memory address: different in every process.
_ADDRESS = re.compile(r"^<(function|bound method) (.+) at 0x[0-9a-fA-F]+>$")


def _without_addresses(value):
    if isinstance(value, dict):
        return {key: _without_addresses(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_addresses(item) for item in value]
    if isinstance(value, str):
        return _ADDRESS.sub(r"<\1 \2>", value)
    if callable(value):
        return f"<function {getattr(value, '__qualname__', type(value).__name__)}>"
    return value


def _headline(raw: dict, spec: TaskSpec) -> dict:
    results = raw.get("results", {}).get(spec.task)
    if results is None:
        raise ValueError(f"lm-eval returned no results for task {spec.task!r}")
    # "exact_match" takes the metric's first filter; "exact_match,flexible-extract" names one.
    key = next((k for k in results if (k == spec.metric or k.split(",")[0] == spec.metric)
                and "_stderr" not in k), None)
    if key is None:
        raise ValueError(f"task {spec.task}: no metric {spec.metric!r} in {sorted(results)}")
    score = float(results[key])
    stderr_key = key.replace(",", "_stderr,", 1)
    stderr = results.get(stderr_key)
    stderr = float(stderr) if isinstance(stderr, int | float) else float("nan")
    if spec.invert:
        score = 1.0 - score
    return {"score": score, "stderr": stderr, "metric": key,
            "n": raw.get("n-samples", {}).get(spec.task, {}).get("effective")}
