"""Finetuning in one process per GPU: torchrun workers, FSDP2 full sharding, a bf16 HF model out.

`launch` (called by the training step program) writes the job (the tokenized examples, the
prepared tokenizer, the settings) to the run's work folder and starts
`torchrun --standalone --nproc_per_node N -m mtl.distributed job.json`. Each worker loads the
init model, shards every decoder layer and then the whole model with torch's `fully_shard`
(parameters, gradients and AdamW states split across ranks: ZeRO-3's memory), optionally with
bf16 compute over fp32 master weights and activation checkpointing, runs the same
`mtl.training.train` loop as the single-process path, and finally gathers the full weights on
rank 0, which saves them in the configured dtype as Hugging Face safetensors.

On GPUs the process group is NCCL; on a CPU it is gloo, so the same sharded code path runs in CI
with two processes (accelerate hands back DDP on a CPU, not FSDP; hence torch.distributed and
FSDP2 directly, no accelerate).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mtl.io import write_json
from mtl.training import STOP_FILE, STOP_SIGNALS, Example, Preempted, TrainConfig, train

log = logging.getLogger(__name__)
# A worker's exit status after saving on a stop signal (EX_TEMPFAIL: run it again).
PREEMPTED_EXIT = 75


@dataclass(frozen=True)
class Parallel:
    """How a finetuning run uses its processes (config training.parallel, resources)."""

    processes: int = 1
    mixed_precision: str = "no"  # "bf16": bf16 compute, fp32 master weights and reductions
    activation_checkpointing: bool = False


def save_examples(examples: list[Example], path: Path) -> None:
    """Tokenized examples as three flat tensors (loaded once by every rank, no re-tokenizing)."""
    torch.save({
        "input_ids": torch.tensor([t for e in examples for t in e.input_ids], dtype=torch.int32),
        "labels": torch.tensor([t for e in examples for t in e.labels], dtype=torch.int32),
        "lengths": torch.tensor([len(e.input_ids) for e in examples], dtype=torch.int64),
    }, path)


def load_examples(path: Path) -> list[Example]:
    data = torch.load(path, weights_only=True)
    ids, labels = data["input_ids"].tolist(), data["labels"].tolist()
    examples, start = [], 0
    for length in data["lengths"].tolist():
        examples.append(Example(ids[start : start + length], labels[start : start + length]))
        start += length
    return examples


def launch(*, init: Path, tokenizer, examples: list[Example], cfg: TrainConfig,
           parallel: Parallel, resume_dir: Path, run_id: str, out: Path, dtype: str,
           threads: int, seed: int) -> dict:
    """Train in `parallel.processes` workers; the model lands in `out`. Returns the summary."""
    resume_dir.mkdir(parents=True, exist_ok=True)
    work = resume_dir / "job"
    work.mkdir(exist_ok=True)
    tokenizer.save_pretrained(work / "tokenizer")
    save_examples(examples, work / "examples.pt")
    job = {"init": str(init), "tokenizer": str(work / "tokenizer"),
           "examples": str(work / "examples.pt"), "config": asdict(cfg),
           "parallel": asdict(parallel), "resume_dir": str(resume_dir), "run_id": run_id,
           "out": str(out), "dtype": dtype, "seed": seed, "summary": str(work / "summary.json"),
           "threads": max(1, threads // parallel.processes)}
    write_json(work / "job.json", job)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={parallel.processes}", "-m", "mtl.distributed",
               str(work / "job.json")]
    log.info("launching %d training processes: %s", parallel.processes, " ".join(command))
    # Workers import this same library (the step's checkout), and inherit stdout/stderr: their
    # log lines land in the job's log through Snakemake.
    library = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [library, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                    if p not in ("", library))])}
    # A stop signal that reaches this process asks the workers, through the stop file, to save
    # and stop after their step; torchrun ignores SIGUSR1 (it would die of it) and passes
    # SIGTERM on to the workers itself.
    previous = {sig: signal.signal(sig, lambda *_: (resume_dir / STOP_FILE).touch())
                for sig in STOP_SIGNALS}
    try:
        done = subprocess.run(command, check=False, env=env, preexec_fn=_ignore_usr1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if done.returncode != 0 and (resume_dir / STOP_FILE).exists():
        raise Preempted(f"training stopped on a signal after saving a checkpoint in {resume_dir}"
                        "; a rerun resumes from it")
    if done.returncode != 0:
        raise RuntimeError(f"distributed training failed (exit {done.returncode}); the workers' "
                           "errors are above, and the run resumes from its last checkpoint")
    return json.loads((work / "summary.json").read_text())


def _ignore_usr1() -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def shard(model: torch.nn.Module, device: torch.device, parallel: Parallel) -> None:
    """FSDP2 on each decoder layer, then the root (embeddings, final norm, LM head)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if parallel.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if parallel.mixed_precision == "bf16" else MixedPrecisionPolicy())
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def save_consolidated(model: torch.nn.Module, out: Path, dtype: torch.dtype) -> None:
    """Gather the full weights on rank 0 (through CPU memory) and save them in HF format."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))
    if dist.get_rank() == 0:
        model.save_pretrained(out, state_dict={k: v.to(dtype) for k, v in full.items()},
                              safe_serialization=True)
    dist.barrier()


def worker(job_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mtl.chat import align_embeddings

    job = json.loads(job_path.read_text())
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    rank = dist.get_rank()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    parallel = Parallel(**job["parallel"])
    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    model = AutoModelForCausalLM.from_pretrained(job["init"], dtype=torch.float32)
    align_embeddings(model, len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    shard(model, device, parallel)
    try:
        summary = train(model, load_examples(Path(job["examples"])),
                        TrainConfig(**job["config"]), tokenizer.pad_token_id,
                        Path(job["resume_dir"]), job["run_id"])
    except Preempted as stopped:
        if rank == 0:
            log.warning("%s", stopped)
        dist.destroy_process_group()
        sys.exit(PREEMPTED_EXIT)
    save_consolidated(model, Path(job["out"]), getattr(torch, job["dtype"]))
    if rank == 0:
        write_json(job["summary"], {**summary, "parallel": asdict(parallel)})
    dist.destroy_process_group()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
