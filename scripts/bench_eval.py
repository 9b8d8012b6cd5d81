"""Generation throughput of one evaluation point: static batches vs. continuous batching.

    python scripts/bench_eval.py                 # one GPU: Llama-2-7B's shape, random bf16 weights
    python scripts/bench_eval.py --tiny          # proves it runs, anywhere (CPU, tiny width)

Both backends generate for the same requests, drawn like one evaluation point of the paper's
benchmarks (`WORKLOAD`: generations per point from the benchmarks' item counts, each request's
prompt length and output length drawn around the benchmark's typical lengths, outputs capped at
the task's token limit). A random model never stops by itself, so each request is made to
generate exactly its drawn length (end-of-sequence disabled):

- static: lm-eval's way — requests sorted by prompt length, batches of --batch-size, each batch
  generating until its longest output is done (`model.generate`, left padding);
- continuous: transformers' continuous batching on the same model object (paged KV cache),
  each request leaving as soon as its own output is done.

Printed per backend: useful generated tokens/s (padding and a batch's idle rows excluded) and the
projected GPU-hours of generation per evaluation point and per table (points per table from the
paper's tables: docs/paper-evaluation.md). The ratio continuous/static is measured in this one run.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass

import torch
from transformers import ContinuousBatchingConfig, GenerationConfig, LlamaConfig, LlamaForCausalLM

SHAPES = {
    # Llama-2-7B (its public config) with Tülu's pad token.
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32001,
           "max_position_embeddings": 4096},
    "tiny": {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1001,
             "max_position_embeddings": 4096},
}


@dataclass(frozen=True)
class Benchmark:
    generations: int  # per evaluation point: items × samples
    limit: int  # the task's max new tokens
    prompt: int  # typical prompt tokens (assumed: the prompt format's few-shot text + an item)
    output: int  # typical output tokens (assumed)


# Generations and limits are the tasks' own (docs/paper-evaluation.md); prompt and output lengths
# are assumptions from the prompt formats (few-shot exemplars dominate GSM8K, BBH, TruthfulQA)
# and from chat models' typical answers, to be replaced by counts from real outputs.
WORKLOAD = {
    "gsm8k": Benchmark(200, 512, 900, 180),
    "bbh": Benchmark(27 * 40, 512, 1000, 150),
    "truthfulqa": Benchmark(817, 50, 250, 40),
    "sciriff": Benchmark(2500, 1024, 1500, 200),
    "toxigen": Benchmark(7000, 512, 110, 60),
    "harmbench": Benchmark(400, 512, 60, 250),
    "xstest": Benchmark(450, 2048, 30, 200),
    "humaneval_plus": Benchmark(164 * 20, 512, 200, 120),
    "mbpp_plus": Benchmark(278 * 20, 512, 150, 100),
}
TABLE_POINTS = {"table 5": 8, "table 3": 43}


def draw(n: int, seed: int, max_positions: int) -> list[tuple[int, int]]:
    """n (prompt, output) lengths, benchmarks in proportion to their generations per point;
    log-normal (σ = 0.5) around each typical length, outputs capped at the task's limit."""
    rng = random.Random(seed)
    names = list(WORKLOAD)
    weights = [WORKLOAD[name].generations for name in names]
    out = []
    for name in rng.choices(names, weights, k=n):
        bench = WORKLOAD[name]
        prompt = max(8, int(rng.lognormvariate(math.log(bench.prompt), 0.5)))
        output = min(bench.limit, max(1, int(rng.lognormvariate(math.log(bench.output), 0.5))))
        out.append((min(prompt, max_positions - output), output))
    return out


def point_tokens() -> int:
    """Expected generated tokens of one evaluation point (typical lengths, not the limits)."""
    return sum(b.generations * b.output for b in WORKLOAD.values())


def static(model, requests, vocab: int, batch_size: int) -> float:
    """Seconds for lm-eval's static batches: longest prompts first, each batch run to its
    longest output."""
    order = sorted(requests, key=lambda r: -r[0])
    start = time.perf_counter()
    for i in range(0, len(order), batch_size):
        batch = order[i:i + batch_size]
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
        "page_size": 32, "num_blocks": sum(math.ceil((p + o) / 32) for p, o in requests),
        "max_batch_tokens": 2048}
    start = time.perf_counter()
    with model.continuous_batching_context_manager(
            generation_config=config, continuous_batching_config=ContinuousBatchingConfig(**sizes),
            warmup=model.device.type == "cuda", block=True) as manager:
        for index, (p, o) in enumerate(requests):
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
    if args.tiny:  # short outputs: the CPU proves the code path, not the throughput
        requests = [(min(p, 64), min(o, 16)) for p, o in requests]
    useful = sum(o for _, o in requests)
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
            hours = point_tokens() / rates[name] / 3600
            tables = ", ".join(f"{t} {hours * p:.1f}" for t, p in TABLE_POINTS.items())
            print(f"{name:<11} {seconds:8.1f} s  {rates[name]:10.1f} tokens/s  "
                  f"{hours:9.2f} h a point  ({tables} h, on this {device})")
    print(f"continuous / static throughput: {rates['continuous'] / rates['static']:.2f}")


if __name__ == "__main__":
    main()
