"""One training loop for every regime: pretraining (toy), general SFT, PTM, CFT, RT.

Deterministic on the CPU: the batch at step s is a pure function of (seed, s), so a run resumed
from a checkpoint at step k replays exactly the batches an uninterrupted run would have seen and
ends in the same bytes. Loss is computed on assistant turns only for chat data. On a GPU the same
code runs in bf16 through accelerate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)
IGNORE = -100


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
    generation prompt, so the mask matches what the model sees at evaluation time.
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
            if full[: len(prompt)] != prompt:
                raise ValueError(f"{source}: row {index + 1}: chat template is not prefix-stable")
            new_prompt = prompt[len(ids):]
            ids = full
            labels += [IGNORE] * len(new_prompt) + full[len(prompt):]
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


def _collate(examples: list[Example], pad_id: int, device) -> dict[str, torch.Tensor]:
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


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    return max(1, math.ceil(cfg.epochs * max(1, n_examples // cfg.batch_size)))


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup then linear decay to zero (the paper's schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(
    model: torch.nn.Module,
    examples: list[Example],
    cfg: TrainConfig,
    pad_id: int,
    resume_dir: Path,
    run_id: str,
) -> dict:
    """Train `model` in place; checkpoint to `resume_dir` and resume from it when it matches.

    Returns a summary (steps, tokens, final loss, wall time) for the provenance record.
    """
    from accelerate import Accelerator

    if not examples:
        raise ValueError("no training examples")
    use_gpu = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="bf16" if use_gpu else "no", cpu=not use_gpu)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = total_steps(len(examples), cfg)
    warmup = max(1, round(cfg.warmup_ratio * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total, warmup)
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    start_step = _maybe_resume(resume_dir, run_id, model, optimizer, scheduler)
    micro = cfg.micro_batch or cfg.batch_size
    losses: list[float] = []
    started = time.time()
    bar = tqdm(total=total, initial=start_step, desc=f"train {run_id[:8]}", unit="step",
               mininterval=2.0, disable=None)
    for step in range(start_step, total):
        batch = [examples[i] for i in _batch_indices(len(examples), cfg.batch_size, step,
                                                      cfg.seed)]
        n_tokens = sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in batch)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for start in range(0, len(batch), micro):
            inputs = _collate(batch[start : start + micro], pad_id, accelerator.device)
            logits = model(input_ids=inputs["input_ids"],
                           attention_mask=inputs["attention_mask"]).logits
            # Sum over tokens, divided by the whole batch's token count: micro-batching and
            # gradient accumulation give the same gradient as one big batch.
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                inputs["labels"][:, 1:].reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            ) / max(1, n_tokens)
            accelerator.backward(loss)
            step_loss += loss.item()
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(step_loss)
        bar.update(1)
        if (step + 1) % max(1, total // 20) == 0 or step + 1 == total:
            recent = sum(losses[-20:]) / len(losses[-20:])
            bar.set_postfix(loss=f"{recent:.4f}")
            log.info("step %d/%d loss %.4f lr %.2e", step + 1, total, recent,
                     scheduler.get_last_lr()[0])
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
            _save_checkpoint(resume_dir, run_id, step + 1, model, optimizer, scheduler)
    bar.close()
    model.eval()
    return {
        "steps": total,
        "resumed_from_step": start_step,
        "examples": len(examples),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
        "seconds": round(time.time() - started, 2),
        "mixed_precision": "bf16" if use_gpu else "no",
        "config": asdict(cfg),
    }


def _checkpoint_path(resume_dir: Path) -> Path:
    return resume_dir / "checkpoint.pt"


def _save_checkpoint(resume_dir: Path, run_id: str, step: int, model, optimizer, scheduler):
    resume_dir.mkdir(parents=True, exist_ok=True)
    path = _checkpoint_path(resume_dir)
    tmp = path.with_suffix(".tmp")
    state = {
        "run_id": run_id,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    torch.save(state, tmp)
    os.replace(tmp, path)
    log.info("checkpoint at step %d -> %s", step, path)


def _maybe_resume(resume_dir: Path, run_id: str, model, optimizer, scheduler) -> int:
    path = _checkpoint_path(resume_dir)
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("run_id") != run_id:
        # A checkpoint of another configuration (data or hyper-parameters changed) is useless.
        log.warning("ignoring checkpoint %s of a different run (%s)", path, state.get("run_id"))
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"])


def clear_checkpoint(resume_dir: Path) -> None:
    """A finished run's resume state is garbage: drop it once the model is safely written."""
    _checkpoint_path(resume_dir).unlink(missing_ok=True)
    if resume_dir.exists() and not any(resume_dir.iterdir()):
        resume_dir.rmdir()
