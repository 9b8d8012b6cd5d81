"""Training throughput: the project's finetuning step vs. a plain bf16 fused-AdamW loop.

    python scripts/bench_train.py                      # one GPU: 7B-width Llama cut to fit
    python scripts/bench_train.py --device cpu --tiny  # proves it runs, anywhere (no MFU)

Both loops train the same random-weight Llama (built from a config: nothing is downloaded) on
the same global batches of synthetic sequences whose lengths are drawn like Tülu v2's (a
log-normal around a few hundred tokens with a long tail, cut at --max-len; an assumption, not a
measurement of the dataset). In the same process, one after the other:

- project: `mtl.training.train` exactly as the training rule's worker runs it with
  config/paper.yaml: FSDP2 `fully_shard` per decoder layer (world size 1 here), fp32 master
  weights with bf16 compute, activation checkpointing, length-grouped micro-batches of 4,
  global batch 128, loss over the global batch's target tokens;
- plain: bf16 weights, `torch.optim.AdamW(fused=True)`, micro-batches in batch order padded to
  their longest sequence, no sharding, no checkpointing.

Printed per loop: tokens/s (real tokens, padding excluded), MFU (model FLOPs 6·N·tokens plus
attention, over --peak-tflops; H100/H200 dense bf16 = 989), padding share, peak memory.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtl.distributed import Parallel, shard
from mtl.training import IGNORE, Example, TrainConfig, collate, token_slots, train

SHAPES = {
    # Llama-2-7B's width (hidden 4096, MLP 11008, 32 heads, vocab 32000 + pad), fewer layers.
    "7b-width": {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "vocab_size": 32001},
    "tiny": {"hidden_size": 64, "intermediate_size": 172, "num_attention_heads": 4,
             "num_key_value_heads": 4, "vocab_size": 1001},
}


def lengths(n: int, max_len: int, seed: int, median: float) -> list[int]:
    """Tülu-like lengths: log-normal (σ = 1) around `median`, at least 16, at most max_len."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn(n, generator=generator).mul(1.0).add(math.log(median)).exp()
    return [int(min(max_len, max(16, x))) for x in draws.tolist()]


def synthetic(n: int, max_len: int, vocab: int, seed: int, median: float) -> list[Example]:
    """Random tokens; the first third of each sequence is the (masked) prompt."""
    generator = torch.Generator().manual_seed(seed + 1)
    out = []
    for length in lengths(n, max_len, seed, median):
        ids = torch.randint(3, vocab - 1, (length,), generator=generator).tolist()
        prompt = length // 3
        out.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def flops_per_token(config: LlamaConfig, params: int, mean_len: float) -> float:
    """6·N (forward + backward) plus causal attention scores and values, per token."""
    return 6 * params + 6 * config.num_hidden_layers * config.hidden_size * mean_len


def init_single_process_group(device: torch.device) -> None:
    with socket.socket() as probe:  # a free port for the one-process group
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.setdefault("LOCAL_RANK", "0")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_project(config, data, cfg, warm, device, args, work: Path) -> dict:
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device)
    shard(model, device, Parallel(1, "bf16" if device.type == "cuda" else "no",
                                  args.activation_checkpointing))
    # Warm-up steps (allocator, kernels) in a run of their own, then the timed run.
    train(model, data[: warm * cfg.batch_size], cfg, 0, work / "warm", "warm")
    reset_memory(device)
    sync(device)
    start = time.perf_counter()
    summary = train(model, data, cfg, 0, work / "timed", "timed")
    sync(device)
    return {"seconds": time.perf_counter() - start, "padding": summary["padding_share"],
            "peak": peak_gib(device)}


def run_plain(config, data, cfg, warm, device) -> dict:
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr,
                                  fused=device.type == "cuda")
    steps = len(data) // cfg.batch_size
    slots = real = 0
    for step in range(steps):
        if step == warm:
            reset_memory(device)
            sync(device)
            start = time.perf_counter()
        batch = data[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        groups = [batch[i : i + cfg.micro_batch]
                  for i in range(0, len(batch), cfg.micro_batch)]
        n_tokens = sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in batch)
        for group in groups:
            inputs = collate(group, 0, device)
            logits = model(input_ids=inputs["input_ids"],
                           attention_mask=inputs["attention_mask"]).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                inputs["labels"][:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum",
            ) / n_tokens
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warm:
            s, r = token_slots(groups)
            slots += s
            real += r
    sync(device)
    return {"seconds": time.perf_counter() - start, "padding": 1 - real / slots,
            "peak": peak_gib(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape (CPU smoke run)")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (7B has 32)")
    parser.add_argument("--batch", type=int, default=128, help="global batch (the paper's)")
    parser.add_argument("--micro", type=int, default=4,
                        help="micro-batch per GPU (config/paper.yaml's)")
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--median-len", type=float, default=380.0,
                        help="median sequence length of the log-normal (assumed Tülu-like)")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--no-activation-checkpointing", dest="activation_checkpointing",
                        action="store_false",
                        help="project loop without it (config/paper.yaml turns it on)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the GPU (H100/H200 SXM: 989)")
    parser.add_argument("--work", type=Path, default=Path("results/.bench_train"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if args.tiny:
        args.layers, args.max_len, args.median_len = 2, 256, 60.0
        args.batch, args.micro, args.steps = min(args.batch, 8), min(args.micro, 2), 4
    shape = SHAPES["tiny" if args.tiny else "7b-width"]
    config = LlamaConfig(**shape, num_hidden_layers=args.layers, max_position_embeddings=4096,
                         tie_word_embeddings=False, attention_dropout=0.0)
    params = sum(p.numel() for p in LlamaForCausalLM(config).parameters()) if args.tiny else (
        # counted without building a second model on the host: embeddings, layers, head
        2 * config.vocab_size * config.hidden_size + args.layers * (
            4 * config.hidden_size**2 + 3 * config.hidden_size * config.intermediate_size
            + 2 * config.hidden_size) + config.hidden_size)
    n = (args.warmup + args.steps) * args.batch
    data = synthetic(n, args.max_len, config.vocab_size, seed=0, median=args.median_len)
    timed = data[args.warmup * args.batch :]
    cfg = TrainConfig(lr=2e-5, batch_size=args.batch, epochs=1, micro_batch=args.micro,
                      checkpoint_every=0, max_len=args.max_len)
    init_single_process_group(device)
    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})"
                                if device.type == "cuda" else "")
          + f"; Llama {shape['hidden_size']}/{shape['intermediate_size']} x {args.layers} "
          f"layers, {params / 1e6:.1f}M parameters; global batch {args.batch}, micro-batch "
          f"{args.micro}, max_len {args.max_len}, median length {args.median_len:.0f}; "
          f"{args.steps} timed steps after {args.warmup}; "
          + ("bf16 compute (project: fp32 master weights; plain: bf16 weights)"
             if device.type == "cuda" else "fp32 on the CPU (no bf16 policy, no MFU)"),
          flush=True)
    tokens = sum(len(e.input_ids) for e in timed)
    mean_len = tokens / len(timed)
    results = {
        "project (FSDP2, grouped micro-batches)": run_project(
            config, timed, cfg, args.warmup, device, args, args.work),
        "plain (no sharding, fused AdamW)": run_plain(config, data, cfg, args.warmup, device),
    }
    print(f"{'loop':40s} {'tokens/s':>10s} {'MFU':>6s} {'padding':>8s} {'peak GiB':>9s}")
    for name, r in results.items():
        rate = tokens / r["seconds"]
        flops = rate * flops_per_token(config, params, mean_len)
        mfu = f"{100 * flops / (args.peak_tflops * 1e12):5.1f}%" if device.type == "cuda" \
            else "  n/a"
        peak = f"{r['peak']:9.1f}" if r["peak"] is not None else "      n/a"
        print(f"{name:40s} {rate:10.0f} {mfu:>6s} {100 * r['padding']:7.1f}% {peak}", flush=True)
    ratio = results["project (FSDP2, grouped micro-batches)"]["seconds"]
    ratio = results["plain (no sharding, fused AdamW)"]["seconds"] / ratio
    print(f"project / plain throughput: {ratio:.2f}x")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
