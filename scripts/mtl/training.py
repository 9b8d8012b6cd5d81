"""One training loop for every regime: pretraining (toy), general SFT, PTM, CFT, RT.

Deterministic: the global batch at step s is a pure function of (seed, s), so a run resumed from
a checkpoint at step k replays exactly the batches an uninterrupted run would have seen. The same
loop runs in one process (the toy world on a CPU) or in one process per GPU under
torch.distributed (mtl.distributed shards the model with FSDP2 first): every rank builds the
same global batch, sorts it by length, cuts it into micro-batches and trains on its own share,
and the loss is normalised over the whole global batch's target tokens, so the update does not
depend on the number of processes beyond float rounding. Loss is on assistant turns only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from mtl.io import write_json

log = logging.getLogger(__name__)
IGNORE = -100
LOSS_WINDOW = 20  # the final loss is the mean of this many last steps
# SLURM warns a job before its time limit or a preemption with the signal `--signal` names
# (SIGUSR1 here) and ends it with SIGTERM: on either, training saves a resume checkpoint after
# the step under way and stops. So does a file named STOP_FILE in the resume folder, which the
# launcher of the distributed workers writes when the signal reaches only it.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STOP_FILE = "stop"


class Preempted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; a rerun resumes from it."""


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    batch_size: int
    epochs: float
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_len: int = 64
    micro_batch: int | None = None
    checkpoint_every: int = 50
    seed: int = 0
    max_grad_norm: float = 1.0


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


def encode_chat(rows: Sequence[dict], tokenizer, max_len: int, source: str) -> list[Example]:
    """Tokenize chat rows with the chat template; only assistant tokens carry loss.

    The prompt part is the template applied to the turns before each assistant turn with a
    generation prompt, so the mask matches what the model sees at evaluation time. Rows are cut
    at `max_len` tokens; a row whose every answer token lies past the cut would train on nothing
    (its loss is zero, yet it fills a batch slot), so it is dropped: every row gives one example
    or, cut away, none.
    """
    examples = []
    for index, row in enumerate(rows):
        messages = row.get("messages")
        if not messages or not any(m.get("role") == "assistant" for m in messages):
            raise ValueError(f"{source}: row {index + 1} has no assistant message")
        ids: list[int] = []
        labels: list[int] = []
        for turn, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = _template_ids(tokenizer, messages[:turn], generation_prompt=True)
            full = _template_ids(tokenizer, messages[: turn + 1], generation_prompt=False)
            # Each prompt must extend the tokens so far, or labels would shift against inputs.
            if full[: len(prompt)] != prompt or prompt[: len(ids)] != ids:
                raise ValueError(f"{source}: row {index + 1}: chat template is not prefix-stable")
            new_prompt = prompt[len(ids):]
            ids = full
            labels += [IGNORE] * len(new_prompt) + full[len(prompt):]
        if all(label == IGNORE for label in labels[:max_len]):
            continue
        examples.append(Example(ids[:max_len], labels[:max_len]))
    return examples


def _template_ids(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt
    )
    return list(encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys")
                else encoded)


def encode_corpus(rows: Sequence[dict], tokenizer, max_len: int) -> list[Example]:
    """Pack plain documents, separated by EOS, into full-length blocks (all tokens carry loss)."""
    stream: list[int] = []
    for row in rows:
        stream += tokenizer(row["text"], add_special_tokens=False)["input_ids"]
        stream.append(tokenizer.eos_token_id)
    blocks = [stream[i : i + max_len] for i in range(0, len(stream) - max_len + 1, max_len)]
    return [Example(block, list(block)) for block in blocks]


def fingerprint(*parts: object) -> str:
    """A stable id of what a run is: init weights, data and hyper-parameters."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The example indices of `step`: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = max(1, n // batch_size)
    epoch, position = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return order[position * batch_size : (position + 1) * batch_size]


def collate(examples: list[Example], pad_id: int, device) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
        mask[row, : len(example.input_ids)] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device),
            "attention_mask": mask.to(device)}


def micro_batches(batch: list[Example], micro: int, rank: int = 0,
                  world: int = 1) -> list[list[Example]]:
    """This rank's micro-batches of one global batch: length-grouped, the same count per rank.

    The global batch is sorted by length and cut into world·k contiguous groups of near-equal
    size (k = micro-batches per rank), so each micro-batch holds sequences of similar length and
    pads little; group j goes to rank j mod world. Every rank runs the same number of forward and
    backward passes, as FSDP's collectives require. A batch that fits one micro-batch in one
    process keeps its order (the toy default's numbers do not move).
    """
    if len(batch) % world:
        raise ValueError(f"training batch_size {len(batch)} is not a multiple of the "
                         f"{world} training processes")
    per_rank = len(batch) // world
    k = math.ceil(per_rank / micro)
    if world == 1 and k == 1:
        return [batch]
    ordered = sorted(batch, key=lambda e: len(e.input_ids))
    base, extra = divmod(len(ordered), world * k)
    groups, start = [], 0
    for j in range(world * k):
        size = base + (1 if j < extra else 0)
        groups.append(ordered[start : start + size])
        start += size
    return groups[rank::world]


def token_slots(groups: Sequence[Sequence[Example]]) -> tuple[int, int]:
    """(token slots the padded micro-batches take, real tokens among them)."""
    slots = sum(len(g) * max(len(e.input_ids) for e in g) for g in groups)
    return slots, sum(len(e.input_ids) for g in groups for e in g)


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    return max(1, math.ceil(cfg.epochs * max(1, n_examples // cfg.batch_size)))


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup then linear decay to zero (the paper's schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _world()[1] > 1:
        dist.barrier()


def train(
    model: torch.nn.Module,
    examples: list[Example],
    cfg: TrainConfig,
    pad_id: int,
    resume_dir: Path,
    run_id: str,
) -> dict:
    """Train `model` in place; checkpoint to `resume_dir` and resume from it when it matches.

    In one process `model` is a plain module; under torch.distributed it is already sharded
    (mtl.distributed), with its own mixed-precision policy, and every rank calls this with the
    same examples.
    Returns a summary (steps, tokens, final loss, wall time) for the provenance record.
    """
    if not examples:
        raise ValueError("no training examples")
    rank, world = _world()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  foreach=True)
    total = total_steps(len(examples), cfg)
    warmup = max(1, round(cfg.warmup_ratio * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total, warmup)
    )
    model.train()

    # The losses of the steps before a resume come back with the checkpoint: the final loss
    # (the last LOSS_WINDOW steps') is then the same as an uninterrupted run's.
    start_step, losses = _maybe_resume(resume_dir, run_id, model, optimizer, scheduler)
    (resume_dir / STOP_FILE).unlink(missing_ok=True)
    started = time.time()
    bar = tqdm(total=total, initial=start_step, desc=f"train {run_id[:8]}", unit="step",
               mininterval=2.0, disable=None if rank == 0 else True)
    with _stop_requests() as signalled:
        _loop(model, examples, cfg, pad_id, resume_dir, run_id, optimizer, scheduler,
              range(start_step, total), signalled, losses, bar, tokens := [0, 0])
    all_slots, real_tokens = tokens
    bar.close()
    model.eval()
    return {
        "steps": total,
        "resumed_from_step": start_step,
        "examples": len(examples),
        "final_loss": sum(losses[-LOSS_WINDOW:]) / len(losses[-LOSS_WINDOW:]) if losses else None,
        "seconds": round(time.time() - started, 2),
        "padding_share": round(1 - real_tokens / max(1, all_slots), 4),
        "processes": world,
        "config": asdict(cfg),
    }


def _loop(model: torch.nn.Module, examples: list[Example], cfg: TrainConfig, pad_id: int,
          resume_dir: Path, run_id: str, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, steps: range,
          signalled: threading.Event, losses: list[float], bar: tqdm, tokens: list[int]) -> None:
    """The optimizer steps `steps`; `tokens` accumulates [token slots, real tokens]."""
    rank, world = _world()
    device = next(model.parameters()).device
    micro = cfg.micro_batch or cfg.batch_size
    total = steps.stop
    for step in steps:
        batch = [examples[i] for i in _batch_indices(len(examples), cfg.batch_size, step,
                                                      cfg.seed)]
        n_tokens = sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in batch)
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), dtype=torch.float64)
        mine = micro_batches(batch, micro, rank, world)
        for group in mine:
            inputs = collate(group, pad_id, device)
            logits = model(input_ids=inputs["input_ids"],
                           attention_mask=inputs["attention_mask"]).logits
            # Sum over tokens, divided by the whole global batch's token count: micro-batches,
            # gradient accumulation and ranks together give the gradient of one big batch.
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                inputs["labels"][:, 1:].reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            ) / max(1, n_tokens)
            # Gradient reductions average over ranks; the sum over ranks is wanted.
            (loss * world if world > 1 else loss).backward()
            step_loss += loss.detach().double().cpu()
        if world > 1:
            dist.all_reduce(step_loss)
        slots, real = token_slots(mine)
        tokens[0] += slots
        tokens[1] += real
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(step_loss.item())
        bar.update(1)
        if (step + 1) % max(1, total // 20) == 0 or step + 1 == total:
            recent = sum(losses[-LOSS_WINDOW:]) / len(losses[-LOSS_WINDOW:])
            bar.set_postfix(loss=f"{recent:.4f}")
            if rank == 0:
                log.info("step %d/%d loss %.4f lr %.2e", step + 1, total, recent,
                         scheduler.get_last_lr()[0])
        if step + 1 == total:
            break
        stop = _stop_requested(signalled, resume_dir, device)
        if stop or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0):
            _save_checkpoint(resume_dir, run_id, step + 1, model, optimizer, scheduler,
                             losses[-LOSS_WINDOW:])
        if stop:
            raise Preempted(f"stopped on request after step {step + 1}/{total}; the checkpoint "
                            f"in {resume_dir} resumes the run")


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set when a stop signal arrives (handlers only where Python allows them: the
    main thread), with the previous handlers back afterwards."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = {sig: signal.signal(sig, lambda *_: event.set()) for sig in STOP_SIGNALS}
    try:
        yield event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_requested(signalled: threading.Event, resume_dir: Path, device: torch.device) -> bool:
    """Whether to stop now: the same answer on every rank (one rank may see the signal first)."""
    stop = signalled.is_set() or (resume_dir / STOP_FILE).exists()
    if _world()[1] > 1:
        flag = torch.tensor([float(stop)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


# ---- resume checkpoints: torch.distributed.checkpoint, one shard file per rank -------------
# resume_dir/step-<k>/ is written as step-<k>.tmp/ and renamed only once every rank's shard and
# the metadata are on disk; latest.json (replaced atomically) names the newest whole one, so a
# job killed while saving resumes from the previous checkpoint.


def _latest_path(resume_dir: Path) -> Path:
    return resume_dir / "latest.json"


def _save_checkpoint(resume_dir: Path, run_id: str, step: int, model, optimizer, scheduler,
                     losses: list[float]):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank, _ = _world()
    name = f"step-{step:08d}"
    tmp = resume_dir / f"{name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    with warnings.catch_warnings():
        # One process without a process group is this loop's normal case, not an accident.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp))
    _barrier()
    if rank == 0:
        write_json(tmp / "meta.json", {"run_id": run_id, "step": step, "losses": losses,
                                       "scheduler": scheduler.state_dict()})
        (resume_dir / name).exists() and shutil.rmtree(resume_dir / name)
        tmp.rename(resume_dir / name)
        write_json(_latest_path(resume_dir), {"run_id": run_id, "step": step, "dir": name})
        for old in resume_dir.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint at step %d -> %s", step, resume_dir / name)
    _barrier()


def _maybe_resume(resume_dir: Path, run_id: str, model, optimizer,
                  scheduler) -> tuple[int, list[float]]:
    """The step to start at and the losses of the last steps before it (0 and none without a
    checkpoint of this run)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    latest = _latest_path(resume_dir)
    if not latest.exists():
        return 0, []
    pointer = json.loads(latest.read_text())
    if pointer.get("run_id") != run_id:
        # A checkpoint of another configuration (data or hyper-parameters changed) is useless.
        log.warning("ignoring checkpoint in %s of a different run (%s)", resume_dir,
                    pointer.get("run_id"))
        return 0, []
    folder = resume_dir / pointer["dir"]
    meta = json.loads((folder / "meta.json").read_text())
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
    scheduler.load_state_dict(meta["scheduler"])
    log.info("resumed from %s at step %d", folder, meta["step"])
    return int(meta["step"]), [float(x) for x in meta["losses"]]


def clear_checkpoint(resume_dir: Path) -> None:
    """A finished run's resume state is garbage: drop it once the model is safely written."""
    shutil.rmtree(resume_dir, ignore_errors=True)
