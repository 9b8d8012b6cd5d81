"""The toy world's speed-ups, before vs after, measured in one run (interleaved: a busy machine
slows both sides alike).

    python scripts/bench_toy.py eval --model results/models/general --points 4
    python scripts/bench_toy.py pretrain --steps 30

- eval: one ω-grid point = every suite evaluated in place by `mtl.evaluation.Evaluator`, as the
  evaluation step runs it. "before" clears the per-job caches ahead of each point (every coding
  program runs again in the sandbox, lm-eval's templates compile again), as a job without them
  would; "after" keeps them. Also checks that both give the same scores.
- pretrain: the toy pretraining loop on the world's corpus, one process vs `--processes` gloo
  workers (config training.pretrain.processes), the same global batches; prints the largest
  weight difference between the two.

Times: wall seconds and CPU seconds of this process and its children (the sandbox's programs,
the training workers), best of `--repeat`. Run from the repository root after the toy world,
θ_pre and θ_G are built (`snakemake --cores 2 results/models/general`). Numerics are pinned as
in the workflow (AVX2 kernels, one thread per process).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtl.stepkit import numerics_environment

# Before torch loads: the kernels and thread counts every workflow job pins.
os.environ.update({**numerics_environment({"cpu_isa": "avx2"}), "OMP_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"})

import torch

SUITES = ("general", "science", "safety", "coding", "exref")


def _clock() -> tuple[float, float]:
    """(wall, CPU of this process and its finished children) in seconds."""
    own, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return time.perf_counter(), cpu


def _since(start: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - start[0], now[1] - start[1]


def _report(label: str, times: dict[str, list[tuple[float, float]]]) -> None:
    best = {side: (min(t[0] for t in runs), min(t[1] for t in runs))
            for side, runs in times.items()}
    for side, (wall, cpu) in best.items():
        print(f"{label} {side:>6}: wall {wall:7.2f} s   cpu {cpu:7.2f} s")
    (wall0, cpu0), (wall1, cpu1) = best["before"], best["after"]
    print(f"{label} speed-up: wall {wall0 / wall1:.2f}x   cpu {cpu0 / cpu1:.2f}x")


def bench_eval(args: argparse.Namespace) -> None:
    import lm_eval.utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import mtl.scoring
    from mtl.evaluation import Evaluator, suite_tasks, toy_task_dir

    os.environ.setdefault("MTL_SANDBOX", "auto")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    data = {suite: str(args.world / "eval" / f"{suite}.jsonl") for suite in SUITES}
    with toy_task_dir(data, args.max_gen_toks) as include:
        evaluator = Evaluator(model, tokenizer, suite_tasks(SUITES, {}), include,
                              args.batch_size, args.max_gen_toks, None, args.seed)
        cached_compile = lm_eval.utils.env.from_string
        evaluator.run()  # the first point loads the datasets and probes the sandbox: untimed
        # before: no caches; after: a point whose programs are new to the job (the first of a
        # grid); warm: a point whose programs the job has run (a grid's later points, mostly).
        times: dict[str, list[tuple[float, float]]] = {"before": [], "after": [], "warm": []}
        scores: dict[str, set] = {side: set() for side in times}
        for _ in range(args.points):
            for side in times:
                if side != "warm":
                    mtl.scoring._run_once.cache_clear()
                if side == "before":
                    lm_eval.utils.env.from_string = cached_compile.__wrapped__
                start = _clock()
                out = evaluator.run()
                times[side].append(_since(start))
                lm_eval.utils.env.from_string = cached_compile
                scores[side].add(tuple(out[s]["score"] for s in SUITES))
    _report("eval point", {"before": times["before"], "after": times["after"]})
    _report("eval point, programs seen", {"before": times["before"], "after": times["warm"]})
    same = len(set.union(*scores.values())) == 1
    print(f"scores {'identical' if same else 'DIFFER'}: {sorted(set.union(*scores.values()))}")
    if not same:
        sys.exit(1)


def bench_pretrain(args: argparse.Namespace) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mtl.distributed import Parallel, launch
    from mtl.io import read_jsonl
    from mtl.toy_model import build_model
    from mtl.training import TrainConfig, encode_corpus, train

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.world / "tokenizer")
    model = build_model(len(tokenizer), 256, 4, 8, 680, 128, tokenizer)
    batch = 32
    examples = encode_corpus(read_jsonl(args.world / "corpus.jsonl"), tokenizer, 64)
    examples = examples[: batch * args.steps]
    cfg = TrainConfig(lr=1e-3, batch_size=batch, epochs=1, max_len=64, warmup_ratio=0.05,
                      checkpoint_every=0, seed=args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-toy-"))
    try:
        model.save_pretrained(work / "init")
        times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        diff = 0.0
        for rep in range(args.repeat):
            one = AutoModelForCausalLM.from_pretrained(work / "init", dtype=torch.float32)
            start = _clock()
            train(one, examples, cfg, tokenizer.pad_token_id, work / f"one-{rep}", "one")
            times["before"].append(_since(start))
            start = _clock()
            launch(init=work / "init", tokenizer=tokenizer, examples=examples, cfg=cfg,
                   parallel=Parallel(processes=args.processes), resume_dir=work / f"n-{rep}",
                   run_id="n", out=work / f"out-{rep}", dtype="float32",
                   threads=args.processes, seed=args.seed)
            times["after"].append(_since(start))
            many = AutoModelForCausalLM.from_pretrained(work / f"out-{rep}", dtype=torch.float32)
            diff = max(diff, *((a - b).abs().max().item() for a, b in
                               zip(one.state_dict().values(), many.state_dict().values(),
                                   strict=True)))
        _report(f"pretrain {args.steps} steps (1 vs {args.processes} processes)", times)
        print(f"largest weight difference, 1 vs {args.processes} processes: {diff:.2e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ev = sub.add_parser("eval", help="one ω-grid point: per-job caches off vs on")
    ev.add_argument("--model", type=Path, default=Path("results/models/general"))
    ev.add_argument("--points", type=int, default=3, help="timed points per side")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--max-gen-toks", type=int, default=16)
    pre = sub.add_parser("pretrain", help="toy pretraining: 1 vs N gloo processes")
    pre.add_argument("--steps", type=int, default=30)
    pre.add_argument("--processes", type=int, default=2)
    pre.add_argument("--repeat", type=int, default=2)
    for p in (ev, pre):
        p.add_argument("--world", type=Path, default=Path("results/world"))
        p.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    {"eval": bench_eval, "pretrain": bench_pretrain}[args.what](args)


if __name__ == "__main__":
    main()
