"""Paper-scale training on the CPU: the Tülu chat format and pad token, length-grouped
micro-batches, FSDP2 workers on gloo (2 processes = 1 process; killed and resumed = not killed),
and hub rows without their fields named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from mtl import standin
from mtl.chat import prepare
from mtl.distributed import Parallel, launch
from mtl.sources import normalize
from mtl.training import IGNORE, Example, TrainConfig, encode_chat, micro_batches, train

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A stand-in θ_pre on disk: tiny Llama-2 shape, BPE without chat template or pad."""
    root = tmp_path_factory.mktemp("base")
    tables = standin.datasets(64, 0)
    tokenizer = standin.build_tokenizer(standin.corpus_texts(tables), 400)
    torch.manual_seed(0)
    standin.build_model(tokenizer, 32, 2, 4, 2, 64, 256).save_pretrained(root)
    tokenizer.save_pretrained(root)
    (root / "rows.json").write_text(json.dumps(tables["tulu-v2-sft-mixture"]))
    return root


def load(base: Path):
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    prepare(tokenizer, model, "tulu")
    return tokenizer, model


# ---- chat format and pad token ---------------------------------------------------------------


def test_tulu_format_and_assistant_only_loss(base):
    tokenizer, _ = load(base)
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": " what is a cell "},
                {"role": "assistant", "content": "a unit"},
                {"role": "user", "content": "and a graph"},
                {"role": "assistant", "content": "nodes and edges"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == ("<s><|system|>\nbe brief\n<|user|>\nwhat is a cell\n<|assistant|>\na unit</s>\n"
                    "<|user|>\nand a graph\n<|assistant|>\nnodes and edges</s>")
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|user|>\nwhat is a cell\n<|assistant|>\n")
    (example,) = encode_chat([{"messages": messages}], tokenizer, 512, "rows")
    supervised = [t if label != IGNORE else None
                  for t, label in zip(example.input_ids, example.labels, strict=True)]
    pieces = "".join(tokenizer.decode([t]) if t is not None else "|" for t in supervised)
    assert [p for p in pieces.split("|") if p] == ["a unit</s>", "nodes and edges</s>"]


def test_pad_token_added_once_with_mean_rows(base):
    tokenizer, model = load(base)
    raw = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    vocab = raw.get_input_embeddings().weight.shape[0]
    assert len(tokenizer) == vocab + 1 and tokenizer.pad_token == "<pad>"
    for new, old in ((model.get_input_embeddings(), raw.get_input_embeddings()),
                     (model.get_output_embeddings(), raw.get_output_embeddings())):
        assert torch.equal(new.weight[:vocab], old.weight)
        assert torch.allclose(new.weight[vocab], old.weight.mean(0))
    # A prepared tokenizer and model (θ_G, before CFT) are left as they are.
    prepare(tokenizer, model, "tulu")
    assert len(tokenizer) == vocab + 1 == model.get_input_embeddings().weight.shape[0]


def test_base_model_without_template_needs_one(base):
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"model\.chat_template"):
        prepare(tokenizer, model, None)


# ---- batching ---------------------------------------------------------------------------------


def test_micro_batches_group_lengths_and_split_evenly():
    batch = [Example([1] * n, [1] * n) for n in (9, 1, 7, 3, 5, 2, 8, 4)]
    one = micro_batches(batch, 2)
    two = [micro_batches(batch, 2, rank, 2) for rank in (0, 1)]
    assert [[len(e.input_ids) for e in g] for g in one] == [[1, 2], [3, 4], [5, 7], [8, 9]]
    assert len(two[0]) == len(two[1]) == 2  # the same number of passes on every rank
    assert sorted(len(e.input_ids) for r in two for g in r for e in g) == [1, 2, 3, 4, 5, 7, 8, 9]
    assert micro_batches(batch, 8) == [batch]  # one micro-batch, one process: order kept
    with pytest.raises(ValueError, match="not a multiple of the 3 training processes"):
        micro_batches(batch, 2, 0, 3)


# ---- datasets ---------------------------------------------------------------------------------


def test_row_without_needed_fields_is_named():
    spec = {"prompt_field": "query", "response_field": "answer"}
    rows = [{"query": "q", "answer": "a"}, {"query": "q2"}]
    with pytest.raises(ValueError, match=r"CodeFeedback@abc: row 2 is missing field\(s\) "
                                         r"\['answer'\]"):
        normalize(rows, spec, "CodeFeedback@abc")
    with pytest.raises(ValueError, match=r"tulu: row 1: message 2 needs 'role' and 'content'"):
        normalize([{"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}],
                  {}, "tulu")
    with pytest.raises(ValueError, match=r"coconot: row 1 is missing field 'category'"):
        normalize([{"prompt": "p", "response": "r"}],
                  {"prompt_field": "prompt", "response_field": "response",
                   "source_field": "category"}, "coconot")


def test_source_filters_on_the_stand_in_schemas():
    tables = standin.datasets(40, 0)
    general = normalize(tables["tulu-v2-sft-mixture"],
                        {"exclude_sources": ["science", "code_alpaca", "hard_coded"]}, "tulu")
    assert general and not any(r["source"].startswith(("science", "code_alpaca", "hard_coded"))
                               for r in general)
    safety = normalize(tables["coconot"], {"prompt_field": "prompt", "response_field": "response",
                                           "source_field": "category",
                                           "include_sources": ["Requests with safety concerns"]},
                       "coconot")
    assert len(safety) == 20
    science = normalize(tables["SciRIFF"], {"prompt_field": "input", "response_field": "output",
                                            "source_field": "_instance_id",
                                            "source_delimiter": ":",
                                            "exclude_sources": ["scierc_ner"]}, "sciriff")
    assert science and all(":" not in r["source"] and r["source"] != "scierc_ner"
                           for r in science)


# ---- distributed: 2 processes = 1 process, killed + resumed = uninterrupted -------------------

CFG = TrainConfig(lr=2e-3, batch_size=8, epochs=1, micro_batch=2, checkpoint_every=3, seed=3,
                  max_len=96)


def examples(base: Path, tokenizer) -> list[Example]:
    rows = json.loads((base / "rows.json").read_text())
    return encode_chat(rows, tokenizer, CFG.max_len, "rows")


def test_two_processes_give_the_weights_of_one(base, tmp_path):
    tokenizer, model = load(base)
    data = examples(base, tokenizer)
    one = train(model, data, CFG, tokenizer.pad_token_id, tmp_path / "r1", "run")
    two = launch(init=base, tokenizer=tokenizer, examples=data, cfg=CFG,
                 parallel=Parallel(processes=2), resume_dir=tmp_path / "r2", run_id="run",
                 out=tmp_path / "out2", dtype="float32", threads=2, seed=3)
    # One step per whole global batch, whatever the process count (rows whose answer is cut
    # away at max_len are dropped before, so the count comes from the encoded data).
    steps = len(data) // CFG.batch_size * CFG.epochs
    assert steps > CFG.checkpoint_every
    assert one["steps"] == two["steps"] == steps and two["processes"] == 2
    sharded = load_file(tmp_path / "out2" / "model.safetensors")
    single = model.state_dict()
    assert sharded.keys() == single.keys()
    key = "model.layers.0.mlp.down_proj.weight"
    moved = (single[key] - load_file(base / "model.safetensors")[key]).abs().max()
    assert moved > 1e-3  # training changed the weights, so agreeing below means something
    for key in single:
        assert torch.allclose(sharded[key], single[key], atol=1e-5, rtol=1e-4), key
    # The saved model is the consolidated HF folder, loadable as is.
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out2").config.vocab_size \
        == len(tokenizer)


DRIVER = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    sys.path.insert(0, {scripts!r})
    from transformers import AutoTokenizer, AutoModelForCausalLM
    from mtl.chat import prepare
    from mtl.distributed import Parallel, launch
    from mtl.training import TrainConfig, encode_chat
    base, work = Path(sys.argv[1]), Path(sys.argv[2])
    tok = AutoTokenizer.from_pretrained(base)
    prepare(tok, AutoModelForCausalLM.from_pretrained(base), "tulu")
    rows = json.loads((base / "rows.json").read_text())
    cfg = TrainConfig(lr=2e-3, batch_size=8, epochs=4, micro_batch=2, checkpoint_every=5,
                      seed=3, max_len=96)
    out = launch(init=base, tokenizer=tok, examples=encode_chat(rows, tok, 96, "rows"), cfg=cfg,
                 parallel=Parallel(processes=2),
                 resume_dir=work / "resume", run_id="run", out=work / "model",
                 dtype="float32", threads=2, seed=3)
    print("resumed_from", out["resumed_from_step"], "steps", out["steps"])
""")


def run_driver(base: Path, work: Path, kill_after_checkpoint: bool = False) -> str | None:
    script = work.parent / "driver.py"
    script.write_text(DRIVER.format(scripts=str(SCRIPTS)))
    proc = subprocess.Popen([sys.executable, str(script), str(base), str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if not kill_after_checkpoint:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        return stdout
    latest = work / "resume" / "latest.json"
    deadline = time.time() + 300
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # past the checkpoint, to a step that is not one
    assert proc.poll() is None, "training finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, torchrun and both workers
    proc.wait()
    return None


# Three two-process runs each (a torchrun and two workers importing torch apiece): half a minute
# on an idle 2-core machine, so they run with the slow tests (`pytest -ra`, CI); the fast tests
# keep the two-process run above and the one-process kill and stop tests (test_training.py).
@pytest.mark.slow
def test_two_process_run_killed_after_a_checkpoint_resumes_to_the_same_weights(base, tmp_path):
    reference = run_driver(base, tmp_path / "a")
    assert reference.split()[1] == "0"
    assert run_driver(base, tmp_path / "b", kill_after_checkpoint=True) is None
    assert not (tmp_path / "b" / "model").exists()
    resumed = run_driver(base, tmp_path / "b")
    assert int(resumed.split()[1]) > 0, "the rerun did not resume from a checkpoint"
    a = load_file(tmp_path / "a" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"


@pytest.mark.slow
def test_two_process_run_stopped_by_a_signal_saves_and_resumes_to_the_same_weights(base,
                                                                                tmp_path):
    """SLURM's warning signal (SIGUSR1) reaches the job's processes: the workers save after the
    step under way and stop (torchrun survives it); the rerun resumes to the same bytes."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(scripts=str(SCRIPTS))
                      .replace("epochs=4, micro_batch=2, checkpoint_every=5",
                               "epochs=2, micro_batch=2, checkpoint_every=0"))

    def run(work: Path, stop: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.Popen([sys.executable, str(script), str(base), str(work)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        if stop:
            for line in proc.stderr:  # rank 0 logs every step of this short run
                if "step 2/" in line:
                    os.killpg(proc.pid, signal.SIGUSR1)
                    break
        stdout, stderr = proc.communicate(timeout=600)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    reference = run(tmp_path / "a")
    assert reference.returncode == 0
    steps = int(reference.stdout.split()[3])
    stopped = run(tmp_path / "b", stop=True)
    assert stopped.returncode != 0 and "Preempted" in stopped.stderr, stopped.stderr[-2000:]
    saved = json.loads((tmp_path / "b" / "resume" / "latest.json").read_text())["step"]
    assert 2 <= saved < steps and not (tmp_path / "b" / "model").exists()
    resumed = run(tmp_path / "b")
    assert resumed.returncode == 0 and resumed.stdout.split()[1] == str(saved)
    a = load_file(tmp_path / "a" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
