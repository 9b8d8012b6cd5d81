"""Training: assistant-only loss masks, determinism, and resume after SIGKILL, bit for bit."""

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

from mtl.toy_model import build_model, build_tokenizer
from mtl.training import IGNORE, TrainConfig, encode_chat, encode_corpus, train

ROWS = [
    {"messages": [{"role": "user", "content": f"add {a} and {b}"},
                  {"role": "assistant", "content": str(a + b)}]}
    for a in range(10) for b in range(10)
]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [m["content"] for row in ROWS for m in row["messages"]] + ["to add gives ."]
    return build_tokenizer(texts)


def tiny_model(tokenizer):
    torch.manual_seed(0)
    return build_model(len(tokenizer), 16, 1, 2, 32, 32, tokenizer)


def test_only_assistant_tokens_carry_loss(tokenizer):
    (example,) = encode_chat(ROWS[23:24], tokenizer, 64, "rows")
    supervised = [t for t, label in zip(example.input_ids, example.labels, strict=True)
                  if label != IGNORE]
    assert tokenizer.decode(supervised) == "5 </s>"
    prompt = example.input_ids[: len(example.input_ids) - len(supervised)]
    assert tokenizer.decode(prompt) == "<|user|> add 2 and 3 <|assistant|>"


def test_row_without_assistant_turn_names_source_and_row(tokenizer):
    bad = [ROWS[0], {"messages": [{"role": "user", "content": "add 1 and 1"}]}]
    with pytest.raises(ValueError, match=r"data.jsonl: row 2 has no assistant message"):
        encode_chat(bad, tokenizer, 64, "data.jsonl")


def test_corpus_packing_fills_blocks(tokenizer):
    blocks = encode_corpus([{"text": "to add 1 and 2 gives 3 ."}] * 10, tokenizer, 8)
    assert blocks and all(len(b.input_ids) == 8 == len(b.labels) for b in blocks)


def test_training_is_deterministic_and_learns(tokenizer, tmp_path):
    cfg = TrainConfig(lr=3e-3, batch_size=8, epochs=10, checkpoint_every=0, seed=5)
    states = []
    for run in range(2):
        model = tiny_model(tokenizer)
        examples = encode_chat(ROWS, tokenizer, 32, "rows")
        summary = train(model, examples, cfg, tokenizer.pad_token_id, tmp_path / str(run), "r")
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert summary["final_loss"] < 2.0  # from ~ln(vocab) ≈ 3.6: it learned something


DRIVER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from safetensors.torch import save_file
    sys.path.insert(0, {src!r})
    from mtl.toy_model import build_model, build_tokenizer
    from mtl.training import TrainConfig, encode_chat, train
    rows = [{{"messages": [{{"role": "user", "content": f"add {{a}} and {{b}}"}},
                           {{"role": "assistant", "content": str(a + b)}}]}}
            for a in range(10) for b in range(10)]
    texts = [m["content"] for r in rows for m in r["messages"]] + ["to add gives ."]
    tok = build_tokenizer(texts)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(len(tok), 16, 1, 2, 32, 32, tok)
    cfg = TrainConfig(lr=3e-3, batch_size=4, epochs=12, checkpoint_every=7, seed=5)
    summary = train(model, encode_chat(rows, tok, 32, "rows"), cfg, tok.pad_token_id,
                    Path(sys.argv[1]), "run")
    save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, sys.argv[2])
    print("resumed_from", summary["resumed_from_step"])
""")


def start_driver(tmp_path, resume_dir, out) -> subprocess.Popen:
    """The toy training run in a process of its own, on one thread."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(src=str(Path(__file__).parents[1] / "scripts")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(resume_dir), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)


def finish(proc: subprocess.Popen) -> str:
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    return stdout


def kill_after_checkpoint(proc: subprocess.Popen, resume_dir: Path) -> None:
    checkpoint = resume_dir / "latest.json"
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    # Let it run past the checkpoint a little, to a step that is not a checkpoint.
    time.sleep(0.3)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_mid_run_resumes_to_identical_weights(tmp_path):
    from safetensors.torch import load_file

    # The uninterrupted reference runs beside the run that is killed (one thread each).
    reference = tmp_path / "reference.safetensors"
    uninterrupted = start_driver(tmp_path, tmp_path / "resume-a", reference)

    resumed = tmp_path / "resumed.safetensors"
    kill_after_checkpoint(start_driver(tmp_path, tmp_path / "resume-b", resumed),
                          tmp_path / "resume-b")
    assert not resumed.exists()
    stdout = finish(start_driver(tmp_path, tmp_path / "resume-b", resumed))
    assert int(stdout.split()[-1]) > 0, "the rerun did not resume from a checkpoint"
    finish(uninterrupted)

    a, b = load_file(reference), load_file(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"


def test_sigterm_saves_and_the_rerun_resumes_to_identical_weights(tmp_path):
    """SLURM's warning signal (or its SIGTERM) mid-run: the loop saves after the step under
    way and stops; the rerun resumes from that checkpoint to the uninterrupted run's bytes."""
    from safetensors.torch import load_file

    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(src=str(Path(__file__).parents[1] / "scripts"))
                      .replace("epochs=12, checkpoint_every=7", "epochs=20, checkpoint_every=0")
                      .replace("import sys, torch", "import logging, sys, torch\n"
                               "logging.basicConfig(level=logging.INFO)"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(resume: Path, out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(resume), str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)

    def run(proc: subprocess.Popen, stop_with: int | None = None) -> subprocess.CompletedProcess:
        if stop_with is not None:
            for line in proc.stderr:  # the loop logs every 25 of its 500 steps
                if " loss " in line:
                    proc.send_signal(stop_with)
                    break
        stdout, stderr = proc.communicate(timeout=600)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    # The uninterrupted reference runs beside the run that is stopped (one thread each).
    reference = tmp_path / "reference.safetensors"
    uninterrupted = start(tmp_path / "resume-a", reference)
    resumed = tmp_path / "resumed.safetensors"
    stopped = run(start(tmp_path / "resume-b", resumed), stop_with=signal.SIGTERM)
    assert run(uninterrupted).returncode == 0
    assert stopped.returncode != 0 and "Preempted: stopped on request" in stopped.stderr
    saved = json.loads((tmp_path / "resume-b" / "latest.json").read_text())["step"]
    assert 0 < saved < 500 and not resumed.exists()
    again = run(start(tmp_path / "resume-b", resumed))
    assert again.returncode == 0 and int(again.stdout.split()[-1]) == saved
    a, b = load_file(reference), load_file(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
def test_a_resumed_run_reports_the_uninterrupted_runs_final_loss(tokenizer, tmp_path,
                                                                 monkeypatch):
    """The final loss (the last steps' mean, inside the trained model's training_summary.json)
    covers the steps before a resume too: a resumed model folder has the same bytes."""
    import mtl.training as training

    cfg = TrainConfig(lr=3e-3, batch_size=8, epochs=1, checkpoint_every=3, seed=5)
    examples = encode_chat(ROWS, tokenizer, 32, "rows")

    def run(resume_dir: Path) -> dict:
        torch.manual_seed(0)
        return train(tiny_model(tokenizer), examples, cfg, tokenizer.pad_token_id, resume_dir,
                     "r")

    reference = run(tmp_path / "a")
    save = training._save_checkpoint

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after the first checkpoint

    monkeypatch.setattr(training, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(training, "_save_checkpoint", save)
    resumed = run(tmp_path / "b")
    assert resumed["resumed_from_step"] == 3 < reference["steps"] < 3 + training.LOSS_WINDOW
    assert resumed["final_loss"] == reference["final_loss"]
