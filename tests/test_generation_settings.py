"""Every paper task's generation settings reach `model.generate` as docs/paper-evaluation.md's
table says, on a stand-in model whose own `generation_config` says otherwise (so a leak would
change what is generated), through the evaluator the workflow runs."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch

from mtl import benchmarks, judges
from mtl.evaluation import Evaluator, TaskSpec
from mtl.generation import BACKENDS, ContinuousHFLM
from mtl.paper_standin import TULU_TEMPLATE, byte_tokenizer, tiny_llama, write_judge

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "paper-evaluation.md"
MARKER = "<!-- generation-settings"
# What the stand-in model's own generation_config says: every value differs from every task's.
HOSTILE = {"do_sample": True, "temperature": 5.0, "top_k": 3, "top_p": 0.1, "max_new_tokens": 7,
           "repetition_penalty": 2.0}


def cell(text: str):
    text = text.strip()
    if text.startswith("`"):
        return json.loads(text.strip("`").strip())
    return None if text == "—" else text


def doc_table() -> dict[str, dict]:
    """The generation-settings table of docs/paper-evaluation.md, one dict per task."""
    lines = DOC.read_text().split(MARKER, 1)[1].splitlines()[1:]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        # Split on the pipes between cells (none occurs inside a cell's code span).
        cells = dict(zip(header, re.split(r"\s\|\s", line.strip()[2:-2]), strict=True))
        task = cells["task"].strip("` ")
        number = {"none": 0, "—": None}
        rows[task] = {
            "stop": cell(cells["stop strings"]),
            "decoding": cells["decoding"].strip(),
            "temperature": number.get(cells["temperature"].strip(), cells["temperature"]),
            "top_p": number.get(cells["top_p"].strip(), cells["top_p"]),
            "top_k": number.get(cells["top_k"].strip(), cells["top_k"]),
            "max_new_tokens": number.get(cells["max new tokens"].strip(),
                                         cells["max new tokens"]),
            "samples": number.get(cells["samples"].strip(), cells["samples"]),
        }
    return rows


def test_the_table_names_every_registered_task_and_agrees_with_its_task_file():
    table = doc_table()
    assert set(table) == {task.name for task in benchmarks.all_tasks()}
    for name, row in table.items():
        settings = benchmarks.generation(name)
        if settings is None:
            assert row["decoding"] == "log-likelihood" and row["stop"] is None, name
            continue
        assert row["stop"] == settings["until"], name
        assert row["decoding"] == ("sampled" if settings["do_sample"] else "greedy"), name
        assert int(row["max_new_tokens"]) == settings["max_gen_toks"], name
        assert int(row["samples"]) == settings["samples"], name
        if settings["do_sample"]:
            for key in ("temperature", "top_p", "top_k"):
                assert float(row[key]) == settings[key], (name, key)


def test_a_task_file_without_an_explicit_setting_is_refused(tmp_path, monkeypatch):
    text = (benchmarks.TASK_DIR / "paper_mbpp_plus.yaml").read_text()
    (tmp_path / "paper_mbpp_plus.yaml").write_text(text.replace("  top_k: 0\n", ""))
    monkeypatch.setattr(benchmarks, "TASK_DIR", tmp_path)
    benchmarks.task_file.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"paper_mbpp_plus.yaml: generation_kwargs lacks "
                                             r"\['top_k'\]"):
            benchmarks.generation("paper_mbpp_plus")
    finally:
        benchmarks.task_file.cache_clear()


@pytest.fixture(scope="module", params=BACKENDS)
def recorded(request, tmp_path_factory) -> dict[str, dict]:
    """For each task, through either generation backend, the documents lm-eval evaluated and
    one record per generated sequence: the prompt, the stop strings and the settings the
    backend resolved (`generate`'s own merge of its arguments and the model's config; the
    continuous backend's config with transformers' defaults where it leaves one unset)."""
    backend = request.param
    root = tmp_path_factory.mktemp("generation")
    for name, benchmark in benchmarks.BENCHMARKS.items():
        path = root / "results" / "evaldata" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in benchmark.standin()))
    for key in judges.JUDGES:
        write_judge(key, root / "judges" / key)
    monkey = pytest.MonkeyPatch()
    monkey.setenv(judges.ENV_DIR, str(root / "judges"))
    monkey.chdir(root)
    tokenizer = byte_tokenizer(TULU_TEMPLATE, 8192)
    model = tiny_llama(tokenizer, 8192)
    model.generation_config.update(**HOSTILE)
    calls: list[dict] = []

    def generate(input_ids, stopping_criteria, **kwargs):
        config, _ = model._prepare_generation_config(None, **kwargs)
        budget = (config.max_new_tokens if config.max_new_tokens is not None
                  else config.max_length - input_ids.shape[1])
        stops = [criterion.sequence for criterion in stopping_criteria]
        for row in input_ids:
            calls.append({"prompt": tokenizer.decode(row, skip_special_tokens=True),
                          "stop": stops, "config": config, "max_new_tokens": budget})
        # One EOS each: what was asked is recorded; generating it would only cost time.
        eos = torch.full((input_ids.shape[0], 1), tokenizer.eos_token_id)
        return torch.cat([input_ids, eos], dim=1)

    def continuous(self, prompts, config, max_new, stop):
        config = copy.deepcopy(config)
        config.update(**config._get_default_generation_params(), defaults_only=True)
        for prompt in prompts:
            calls.append({"prompt": tokenizer.decode(prompt, skip_special_tokens=True),
                          "stop": list(stop), "config": config, "max_new_tokens": max_new})
        return [[tokenizer.eos_token_id] for _ in prompts]

    monkey.setattr(ContinuousHFLM, "_continuous", continuous)

    out: dict[str, dict] = {}
    try:
        for task in benchmarks.all_tasks():
            evaluator = Evaluator(model, tokenizer, {task.suite: [TaskSpec(task.name,
                                                                           task.metric)]},
                                  benchmarks.TASK_DIR, batch_size=64, max_gen_toks=512,
                                  limit=None, seed=1, backend=backend)
            model.generate = generate  # after the evaluator set the model up, as lm-eval calls it
            calls.clear()
            documents = evaluator.run()[task.suite]["tasks"][task.name]["n"]
            out[task.name] = {"documents": documents, "calls": list(calls)}
            del model.generate
            model.generation_config.update(**HOSTILE)
    finally:
        monkey.undo()
    return out


@pytest.mark.parametrize("task", sorted(doc_table()))
def test_generate_receives_the_documented_settings(recorded, task):
    row = doc_table()[task]
    calls = recorded[task]["calls"]
    if row["decoding"] == "log-likelihood":
        assert calls == []
        return
    assert calls, f"{task}: nothing was generated"
    for call in calls:
        config = call["config"]
        assert call["stop"] == [*row["stop"], "</s>"], task
        assert call["max_new_tokens"] == int(row["max_new_tokens"]), task
        assert config.max_new_tokens in (None, call["max_new_tokens"]), task
        assert config.num_beams == 1 and config.num_return_sequences == 1, task
        assert config.repetition_penalty == 1.0, task
        assert config.do_sample is (row["decoding"] == "sampled"), task
        if config.do_sample:
            assert config.temperature == float(row["temperature"]), task
            assert config.top_p == float(row["top_p"]), task
            assert config.top_k == int(row["top_k"]), task
    # Each document's prompt is generated `samples` times (stand-in documents may repeat).
    samples = int(row["samples"])
    assert len(calls) == recorded[task]["documents"] * samples, task
    prompts = [call["prompt"] for call in calls]
    assert all(prompts.count(p) % samples == 0 for p in prompts), task
