"""The continuous-batching backend: the same generations as lm-eval's static batches where
decoding is greedy, the same distribution where it samples, and the same cut at stop sequences."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from mtl import benchmarks, judges
from mtl.evaluation import Evaluator, suite_tasks, toy_task_dir
from mtl.generation import BACKENDS, ContinuousHFLM, lm_class
from mtl.paper_standin import (
    TULU_TEMPLATE,
    byte_tokenizer,
    tiny_llama,
    write_workspace,
)

REPO = Path(__file__).resolve().parent.parent
TASK_DIR = REPO / "scripts" / "mtl" / "lmeval_tasks" / "paper"


def make_lm(backend: str, model, tokenizer, **kwargs):
    return lm_class(backend)(pretrained=model, tokenizer=tokenizer, batch_size=4, max_gen_toks=8,
                             **({"seed": 3} if backend == "continuous" else {}), **kwargs)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = byte_tokenizer(TULU_TEMPLATE, 4096)
    return tiny_llama(tokenizer, 4096), tokenizer


def test_an_unknown_backend_is_refused_naming_the_config_key():
    with pytest.raises(ValueError, match=r"evaluation\.backend: 'vllm'"):
        lm_class("vllm")
    assert [lm_class(b).__name__ for b in BACKENDS] == ["HFLM", "ContinuousHFLM"]


def encode(lm, texts: list[str]):
    return lm.tok_batch_encode(texts)


def test_greedy_tokens_equal_static_batches_row_by_row(tiny):
    static, continuous = make_lm("static", *tiny), make_lm("continuous", *tiny)
    texts = ["<|user|>\nshort\n<|assistant|>\n", "a much longer prompt " * 6, "mid length x"]
    context, mask = encode(static, texts)
    width = context.shape[1] + 12
    kwargs = {"attention_mask": mask, "do_sample": False}
    expected = static._model_generate(context, width, [], **dict(kwargs))
    got = continuous._model_generate(context, width, [], **dict(kwargs))
    # The same shape: each row's left-padded context, then its 12 new tokens.
    assert got.shape == expected.shape
    assert torch.equal(got[:, context.shape[1]:], expected[:, context.shape[1]:])


def test_a_stop_sequence_cuts_where_the_static_output_is_cut_and_ends_the_request(tiny):
    static, continuous = make_lm("static", *tiny), make_lm("continuous", *tiny)
    context, mask = encode(static, ["<|user|>\nsay something\n<|assistant|>\n"])
    start = context.shape[1]
    free = static._model_generate(context, start + 40, [], attention_mask=mask, do_sample=False)
    text = static.tok_decode(free[0, start:].tolist())
    # A stop sequence the model does produce: a piece from the middle of its greedy text.
    stop = text[12:15]
    assert stop and stop in text
    cut = text.split(stop)[0]
    got = continuous._model_generate(context, start + 40, [stop], attention_mask=mask,
                                     do_sample=False)
    tokens = [t for t in got[0, start:].tolist() if t != static.tokenizer.pad_token_id]
    assert continuous.tok_decode(tokens).split(stop)[0] == cut
    # Streamed and cancelled at the stop sequence: far fewer than the 40 tokens allowed.
    assert len(tokens) < 40 and stop in continuous.tok_decode(tokens)


def exact_top_k(model, prompt: list[int], k: int, temperature: float):
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1] / temperature
    top = torch.topk(logits, k)
    return top.indices.tolist(), torch.softmax(top.values, -1).tolist()


def chi_square_p(counts: list[int], probs: list[float]) -> float:
    """Upper tail of Pearson's chi-square (Wilson–Hilferty approximation; dof = k − 1)."""
    n = sum(counts)
    stat = sum((c - n * p) ** 2 / (n * p) for c, p in zip(counts, probs, strict=True))
    dof = len(counts) - 1
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_sampled_first_tokens_follow_the_models_distribution_in_both_backends(tiny):
    import copy

    model, tokenizer = tiny
    # A random model's next-token distribution is nearly flat; sharpen it so that a sampler
    # at a wrong temperature or top_k is told apart from the right one.
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.lm_head.weight.mul_(60.0)
    k, temperature, draws = 4, 1.0, 600
    static, continuous = make_lm("static", model, tokenizer), make_lm("continuous", model,
                                                                      tokenizer)
    context, mask = encode(static, ["<|user|>\nwrite code\n<|assistant|>\n"] * draws)
    tokens, probs = exact_top_k(model, context[0].tolist(), k, temperature)
    _, wrong = exact_top_k(model, context[0].tolist(), k, temperature * 3)
    kwargs = {"do_sample": True, "temperature": temperature, "top_k": k, "top_p": 1.0}
    torch.manual_seed(11)
    for lm in (static, continuous):
        out = lm._model_generate(context, context.shape[1] + 1, [], attention_mask=mask,
                                 **dict(kwargs))
        first = out[:, context.shape[1]].tolist()
        # top_k reached the sampler: nothing outside the k most likely tokens.
        assert set(first) <= set(tokens), type(lm).__name__
        counts = [first.count(t) for t in tokens]
        assert chi_square_p(counts, probs) > 1e-3, (type(lm).__name__, counts, probs)
        # The same draws reject the distribution of another temperature: the test has power.
        assert chi_square_p(counts, wrong) < 1e-3, (type(lm).__name__, counts, wrong)


def sample_texts(raw: dict) -> dict[str, list]:
    return {task: [s["resps"] for s in samples] for task, samples in raw["samples"].items()}


def sampled_tasks(raw: dict) -> set[str]:
    """Tasks whose requests sample (lm-eval logs each request's generation kwargs)."""
    out = set()
    for task, samples in raw["samples"].items():
        args = samples[0]["arguments"]
        request = list(args["gen_args_0"].values()) if isinstance(args, dict) else list(args[0])
        if isinstance(request[-1], dict) and request[-1].get("do_sample"):
            out.add(task)
    return out


@pytest.mark.slow
def test_every_stand_in_task_generates_the_same_greedy_text_with_either_backend(
        tmp_path, monkeypatch, tiny):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv(judges.ENV_DIR, str(write_workspace(tmp_path)))
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    tasks = sorted({spec["task"] for specs in benchmarks.task_specs(config["evaluation"],
                                                                   toy=False).values()
                    for spec in specs})
    raw = {backend: simple_evaluate(
        model=make_lm(backend, *tiny), tasks=tasks,
        task_manager=TaskManager(include_path=str(TASK_DIR)), apply_chat_template=True,
        log_samples=True, gen_kwargs="max_gen_toks=8", random_seed=1, numpy_random_seed=1,
        torch_random_seed=1, fewshot_random_seed=1) for backend in BACKENDS}
    static, continuous = (sample_texts(raw[b]) for b in BACKENDS)
    sampled = sampled_tasks(raw["static"])
    assert sampled, "the paper's coding tasks sample: the split below would test nothing"
    for task in tasks:
        if task not in sampled:
            assert continuous[task] == static[task], task
            assert raw["continuous"]["results"][task] == raw["static"]["results"][task], task


@pytest.mark.slow
def test_the_toy_suites_score_and_generate_the_same_with_either_backend(toy_run, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.chdir(toy_run)
    folder = toy_run / "results" / "models" / "general"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    data = {p.stem: str(p.relative_to(toy_run))
            for p in (toy_run / "results" / "world").glob("eval/*.jsonl")}
    assert data, "the toy world's evaluation files"
    specs = suite_tasks(sorted(data), {})
    out = {}
    with toy_task_dir(data, 12) as include:
        for backend in BACKENDS:
            out[backend] = Evaluator(model, tokenizer, specs, include, 32, 12, None, 1,
                                     backend=backend).run()
    for suite in data:
        assert out["continuous"][suite]["score"] == out["static"][suite]["score"], suite
        for task, raw in out["static"][suite]["lm_eval"].items():
            assert (sample_texts(out["continuous"][suite]["lm_eval"][task])
                    == sample_texts(raw)), (suite, task)


def test_a_failed_request_is_an_error_not_a_short_output(tiny):
    continuous = make_lm("continuous", *tiny)
    assert isinstance(continuous, ContinuousHFLM)
    context, mask = encode(continuous, ["hello"])
    too_long = context.shape[1] + 10 ** 6  # far past the model's 4096 positions
    with pytest.raises(RuntimeError, match="continuous batching"):
        continuous._model_generate(context, too_long, [], attention_mask=mask, do_sample=False)
