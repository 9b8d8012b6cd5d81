"""Generation throughput of one evaluation point: static batches vs. continuous batching.

    python scripts/bench_eval.py                 # one GPU: Llama-2-7B's shape, random bf16 weights
    python scripts/bench_eval.py --tiny          # proves it runs, anywhere (CPU, tiny width)

Both backends generate for the same requests, drawn like one evaluation point of the paper's
benchmarks: each generating task of the registry (mtl.eval_cost: counted items × samples, the
task's token limit) in proportion to its generations, each request's prompt and output length
drawn around the task's typical lengths (`TYPICAL`, assumptions), outputs capped at the limit.
A random model never stops by itself, so each request generates exactly its drawn length
(end-of-sequence disabled):

- static: lm-eval's way — requests grouped by task (lm-eval batches one generation setting at a
  time), longest prompts first, batches of --batch-size, each batch generating until its longest
  output is done (`model.generate`, left padding);
- continuous: transformers' continuous batching on the same model object (paged KV cache),
  each request leaving as soon as its own output is done.

Printed: each backend's useful generated tokens/s (a batch's padding and idle rows excluded), the
ratio continuous/static measured in this one run, and the cost table of docs/paper-evaluation.md
(`scripts/eval_cost.py`, every generation at its limit) with the measured throughputs.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch
from transformers import ContinuousBatchingConfig, GenerationConfig, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtl.benchmarks import BENCHMARKS
from mtl.eval_cost import Backend, Load, loads, render

SHAPES = {
    # Llama-2-7B (its public config) with Tülu's pad token.
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32001,
           "max_position_embeddings": 4096},
    "tiny": {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1001,
             "max_position_embeddings": 4096},
}

# Typical (prompt, output) tokens per task: assumptions from the prompt formats (few-shot
# exemplars dominate GSM8K, BBH and TruthfulQA; SciRIFF's inputs fill much of its 4,096 context)
# and from chat models' usual answer lengths, to be replaced by counts from real outputs. A task
# not listed gets DEFAULT_TYPICAL's prompt and a quarter of its token limit.
TYPICAL = {
    "paper_gsm8k": (900, 180),
    "paper_bbh": (1000, 150),
    "paper_truthfulqa": (250, 40),
    "paper_sciriff": (1500, 200),
    "paper_toxigen": (110, 60),
    "paper_harmbench": (60, 250),
    "paper_xstest_unsafe": (30, 200),
    "paper_xstest_safe": (30, 200),
    "paper_humaneval_plus": (200, 120),
    "paper_mbpp_plus": (150, 100),
}
DEFAULT_TYPICAL = 256


def typical(load: Load) -> tuple[int, int]:
    return TYPICAL.get(load.task, (DEFAULT_TYPICAL, max(1, (load.max_new_tokens or 4) // 4)))


def draw(n: int, seed: int, max_positions: int) -> list[tuple[str, int, int]]:
    """n (task, prompt, output) requests, tasks in proportion to their generations per point;
    log-normal (σ = 0.5) around each typical length, outputs capped at the task's limit."""
    rng = random.Random(seed)
    generating = [load for load in loads(list(BENCHMARKS)) if load.generations]
    out = []
    for load in rng.choices(generating, [load.generations for load in generating], k=n):
        prompt_mean, output_mean = typical(load)
        prompt = max(8, int(rng.lognormvariate(math.log(prompt_mean), 0.5)))
        output = min(load.max_new_tokens, max(1, int(rng.lognormvariate(math.log(output_mean),
                                                                        0.5))))
        out.append((load.task, min(prompt, max_positions - output), output))
    return out


def static(model, requests, vocab: int, batch_size: int) -> float:
    """Seconds for lm-eval's static batches: one task at a time, longest prompts first, each
    batch run to its longest output."""
    by_task: dict[str, list[tuple[int, int]]] = {}
    for task, prompt, output in requests:
        by_task.setdefault(task, []).append((prompt, output))
    batches = []
    for rows in by_task.values():
        rows.sort(key=lambda row: -row[0])
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    start = time.perf_counter()
    for batch in batches:
        width = max(p for p, _ in batch)
        steps = max(o for _, o in batch)
        ids = torch.randint(3, vocab, (len(batch), width), device=model.device)
        mask = torch.zeros_like(ids)
        for row, (p, _) in enumerate(batch):
            mask[row, width - p:] = 1
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps,
                       min_new_tokens=steps, do_sample=False, pad_token_id=0, eos_token_id=None)
    sync(model)
    return time.perf_counter() - start


def continuous(model, requests, vocab: int) -> float:
    """Seconds for continuous batching: every request its own output length."""
    config = GenerationConfig(do_sample=False, eos_token_id=-1, pad_token_id=0)
    sizes = {} if model.device.type == "cuda" else {
        "page_size": 32, "num_blocks": sum(math.ceil((p + o) / 32) for _, p, o in requests),
        "max_batch_tokens": 2048}
    start = time.perf_counter()
    with model.continuous_batching_context_manager(
            generation_config=config, continuous_batching_config=ContinuousBatchingConfig(**sizes),
            warmup=model.device.type == "cuda", block=True) as manager:
        for index, (_, p, o) in enumerate(requests):
            manager.add_request(torch.randint(3, vocab, (p,)).tolist(), request_id=f"r{index}",
                                max_new_tokens=o)
        finished = 0
        while finished < len(requests):
            result = manager.get_result(timeout=1)
            if result is None and not manager.is_running():
                raise RuntimeError("continuous batching stopped early")
            if result is not None and result.is_finished():
                if result.error is not None:
                    raise RuntimeError(f"request {result.request_id}: {result.error}")
                finished += 1
    sync(model)
    return time.perf_counter() - start


def sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny width on the CPU")
    parser.add_argument("--requests", type=int, help="requests timed per backend")
    parser.add_argument("--batch-size", type=int, help="static batch size (lm-eval's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    shape = SHAPES["tiny" if args.tiny else "7b"]
    n = args.requests or (24 if args.tiny else 512)
    batch_size = args.batch_size or (4 if args.tiny else 64)
    torch.manual_seed(args.seed)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = LlamaConfig(**shape, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    requests = draw(n, args.seed, shape["max_position_embeddings"])
    if args.tiny:  # short requests: the CPU proves the code path, not the throughput
        requests = [(task, min(p, 64), min(o, 16)) for task, p, o in requests]
    useful = sum(o for _, _, o in requests)
    print(f"{device}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{n} requests, {useful} generated tokens, static batch {batch_size}")
    rates = {}
    with torch.inference_mode():
        for name, run in (("static", lambda: static(model, requests, shape["vocab_size"],
                                                    batch_size)),
                          ("continuous", lambda: continuous(model, requests,
                                                            shape["vocab_size"]))):
            seconds = run()
            rates[name] = useful / seconds
            print(f"{name:<11} {seconds:8.1f} s  {rates[name]:10.1f} tokens/s")
    print(f"continuous / static throughput: {rates['continuous'] / rates['static']:.2f}")
    # The cost table at these throughputs: a measurement only at Llama-2-7B's shape on a GPU.
    measured = device == "cuda" and not args.tiny
    print(f"\nHours of generation per point and table at these rates ({device}):")
    print(render([Backend(f"{name} on {device}", rate, measured) for name, rate in rates.items()]),
          end="")


if __name__ == "__main__":
    main()
