"""Benchmark the merge engine on an ω grid against mergekit and against the disk's I/O floor.

Builds a synthetic Llama-shaped triple (θ_pre, θ_G, θ_D; bfloat16, two shards each, about
1.6 GB in all) and measures on the same files:

  (a) mtl.merge.merge_to_disk, task_arithmetic θ_G + ω·τ (τ = θ_D − θ_pre) for the 11-point
      grid ω = 0.0 … 1.0 in one pass, in a subprocess (wall time including Python start-up;
      its peak RSS from ru_maxrss);
  (b) mergekit-yaml, once per grid point (11 runs), with the equivalent recipe;
  (c) the I/O floor: read the three inputs once and write 11 copies of a model's files;
  (d) the same writes past the page cache (O_DIRECT, mtl.merge.direct), on two threads, as the
      engine writes its outputs: the disk's own speed, for comparison (no goal is set on it).

Every stage starts after `sync` and a pause (--settle, 10 s), with the inputs in the page
cache. The pause puts every stage in the same state of memory: on a virtual machine that hands
freed memory back to its host (virtio-balloon's free page reporting, after about 2 s), writing
into memory freed a moment ago is about 3x cheaper than into memory that has been handed back
(6 GB through `dd` here: 3.2-3.7 s of kernel time right after deleting the last 6 GB, 8.8-9.8 s
after a pause). Without it the floor, which starts writing within 0.1 s of the previous stage's
deletion, would get the cheap memory and the engine, which first imports torch (2-3 s), the
dear one. Usage:

  python scripts/bench_merge.py [--workdir /tmp/mtl-bench] [--quick] [--keep] [--repeat N]
                                [--breakdown] [--settle SECONDS] [--baseline OTHER/scripts]

--baseline runs the engine of another checkout (say `git worktree add /tmp/base HEAD~1`, then
--baseline /tmp/base/scripts) as (a0), alternating with (a) on the same inputs, and reports
them run by run and whether their weight files are byte-identical: how to show that a change
to the engine is faster and changes no byte.

--breakdown adds where (a)'s CPU time goes: each part of its pass run alone on one thread
(reading, float32 arithmetic, range checks, casts, hashing, writes), in thread CPU seconds.

--quick runs a tiny model and a 3-point grid as a smoke test.

--methods NAME,… (or `all`) times each method of the engine's registry instead: (a) for the
method over the grid, and mergekit-yaml on the mergekit_config.yml (a) wrote beside each of
its outputs, once per ω; per method, (a)'s time over the grid against mergekit's mean time a
run times the grid's points (mergekit re-reads every input for every point). A method without
a mergekit config at some ω (TSV-M, Iso-C/CTS at every ω; SCE and Model Stock away from ω = 1)
is timed against the runs it has, or not at all. --mergekit-runs N times N of each method's
mergekit runs, spread over the grid, and scales their mean to the grid as before (a run reads
and writes the same bytes at any ω): every method in a fraction of the time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL = dict(hidden=1024, intermediate=2816, layers=16, heads=16, vocab=32000, points=11)
QUICK = dict(hidden=64, intermediate=176, layers=2, heads=4, vocab=1000, points=3)
SHARDS = 2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def grid(points: int) -> list[float]:
    return [round(i / (points - 1), 10) for i in range(points)]


# ---------------------------------------------------------------------------------------------
# Synthetic models


def tensor_shapes(size: dict) -> dict[str, tuple[int, ...]]:
    """Llama's tensor names and shapes (untied embeddings, as Llama-2)."""
    h, i = size["hidden"], size["intermediate"]
    shapes = {"model.embed_tokens.weight": (size["vocab"], h)}
    for layer in range(size["layers"]):
        prefix = f"model.layers.{layer}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{prefix}.self_attn.{name}.weight"] = (h, h)
        shapes[f"{prefix}.mlp.gate_proj.weight"] = (i, h)
        shapes[f"{prefix}.mlp.up_proj.weight"] = (i, h)
        shapes[f"{prefix}.mlp.down_proj.weight"] = (h, i)
        shapes[f"{prefix}.input_layernorm.weight"] = (h,)
        shapes[f"{prefix}.post_attention_layernorm.weight"] = (h,)
    shapes["model.norm.weight"] = (h,)
    shapes["lm_head.weight"] = (size["vocab"], h)
    return shapes


def build_models(workdir: Path, size: dict) -> dict[str, Path]:
    """θ_pre random; θ_G and θ_D = θ_pre + small noise; each two bf16 shards with an index."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    shapes = tensor_shapes(size)
    names = list(shapes)
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    config = LlamaConfig(
        hidden_size=size["hidden"],
        intermediate_size=size["intermediate"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["heads"],
        vocab_size=size["vocab"],
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
        dtype="bfloat16",
    )
    paths = {role: workdir / "inputs" / role for role in ("theta_pre", "theta_general", "theta_d")}
    generator = torch.Generator().manual_seed(0)
    for role, path in paths.items():
        path.mkdir(parents=True)
        config.save_pretrained(path)
        weight_map = {}
        for index, shard_names in enumerate(halves, start=1):
            filename = f"model-{index:05d}-of-{SHARDS:05d}.safetensors"
            tensors = {}
            for name in shard_names:
                # Re-seeding per tensor regenerates θ_pre's values for every model.
                generator.manual_seed(zlib.crc32(name.encode()))
                pre = torch.randn(shapes[name], generator=generator) * 0.02
                if role != "theta_pre":
                    pre += torch.randn(shapes[name]) * 0.001
                tensors[name] = pre.to(torch.bfloat16)
                weight_map[name] = filename
            save_file(tensors, path / filename, metadata={"format": "pt"})
        total = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
        )
        log(f"built {role}: {total / 1e9:.2f} GB")
    return paths


# ---------------------------------------------------------------------------------------------
# The three stages


def run_engine(
    workdir: Path,
    points: int,
    scripts: Path = ROOT / "scripts",
    outputs: str = "engine",
    method: str = "task_arithmetic",
) -> dict:
    """(a) in a subprocess: wall time with start-up, and the child's own peak RSS; the engine
    of the checkout whose scripts/ folder is `scripts`, writing to workdir/outputs."""
    start = time.perf_counter()
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--engine-child",
            "--workdir",
            str(workdir),
            "--points",
            str(points),
            "--scripts",
            str(scripts),
            "--outputs",
            outputs,
            "--method",
            method,
        ],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    report = json.loads(child.stdout.strip().splitlines()[-1])
    return {"seconds": time.perf_counter() - start, **report}


def engine_child(workdir: Path, points: int, scripts: Path, outputs: str, method: str) -> None:
    sys.path.insert(0, str(scripts))
    from mtl.merge import merge_to_disk

    inputs = workdir / "inputs"
    start = time.perf_counter()
    written = merge_to_disk(
        method,
        inputs / "theta_general",
        grid(points),
        [workdir / outputs / f"omega-{w}" for w in grid(points)],
        theta_pre=inputs / "theta_pre",
        finetuned=[inputs / "theta_d"],
    )
    seconds = time.perf_counter() - start
    # VmHWM, the peak RSS of this process image. ru_maxrss would not do: Linux carries it
    # across exec, so it would include the (large) benchmark parent that forked this child.
    status = Path("/proc/self/status").read_text()
    max_rss_mb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    weights = [
        {name: digest for name, digest in output["files"].items() if name.endswith(".safetensors")}
        for output in written
    ]
    print(json.dumps({"merge_seconds": seconds, "max_rss_mb": max_rss_mb, "weights": weights}))


def mergekit_recipe(inputs: Path, omega: float) -> str:
    return json.dumps(  # JSON is YAML
        {
            "merge_method": "task_arithmetic",
            "base_model": str(inputs / "theta_pre"),
            "models": [
                {"model": str(inputs / "theta_general"), "parameters": {"weight": 1.0}},
                {"model": str(inputs / "theta_d"), "parameters": {"weight": omega}},
            ],
            "parameters": {"normalize": False},
            "dtype": "float32",
            "out_dtype": "bfloat16",
        },
        indent=2,
    )


def run_mergekit(workdir: Path, points: int) -> dict:
    """(b) one mergekit-yaml run per grid point, as the paper's pipeline does."""
    logs = workdir / "mergekit-logs"
    logs.mkdir(exist_ok=True)
    total = 0.0
    for i, omega in enumerate(grid(points), start=1):
        recipe = workdir / f"mergekit-{omega}.yml"
        recipe.write_text(mergekit_recipe(workdir / "inputs", omega))
        seconds = mergekit_yaml(recipe, workdir / "mergekit" / f"omega-{omega}",
                                logs / f"omega-{omega}.log")
        total += seconds
        log(f"  mergekit run {i}/{points} (ω={omega}): {seconds:.1f} s")
    return {"seconds": total}


def mergekit_yaml(recipe: Path, out: Path, log_file: Path) -> float:
    """Seconds of one mergekit-yaml run of `recipe` into `out`."""
    start = time.perf_counter()
    with open(log_file, "w") as output:
        subprocess.run(
            [
                str(Path(sys.executable).with_name("mergekit-yaml")),
                str(recipe),
                str(out),
                "--no-copy-tokenizer",
                "--quiet",
            ],
            check=True,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    return time.perf_counter() - start


def spread(items: list, count: int | None) -> list:
    """`count` of `items` evenly spread from first to last (all of them when None)."""
    if count is None or count >= len(items):
        return items
    if count == 1:
        return items[-1:]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def run_methods(workdir: Path, points: int, methods: list[str],
                mergekit_runs: int | None = None) -> list[dict]:
    """Per method: (a) over the grid, and mergekit-yaml on each output's mergekit config (on
    `mergekit_runs` of them, spread over the grid, when given: a run's time does not depend on
    ω, and the report scales the mean run to the grid)."""
    rows = []
    for method in methods:
        outputs = f"method-{method}"
        engine = run_engine(workdir, points, outputs=outputs, method=method)
        runs = []
        folders = [f for f in sorted((workdir / outputs).iterdir())
                   if (f / "mergekit_config.yml").exists()]
        for folder in spread(folders, mergekit_runs):
            recipe = folder / "mergekit_config.yml"
            if recipe.exists():
                out = workdir / "mergekit" / f"{method}-{folder.name}"
                runs.append(mergekit_yaml(recipe, out, workdir / f"{method}-{folder.name}.log"))
                shutil.rmtree(out)
        shutil.rmtree(workdir / outputs)
        rows.append({"method": method, "engine": engine["seconds"], "mergekit": runs})
        log(f"{method}: {engine['seconds']:.1f} s; mergekit runs {[round(s, 1) for s in runs]}")
    return rows


def methods_report(rows: list[dict], points: int) -> str:
    """Per method: (a) over the grid against mergekit's mean run times the grid's points."""
    lines = [
        f"| method | (a) {points} outputs, one pass (s) | mergekit runs timed | "
        f"mergekit × {points} (s, mean run × {points}) | (a)/(b) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        runs = row["mergekit"]
        if runs:
            mergekit = sum(runs) / len(runs) * points
            lines.append(
                f"| {row['method']} | {row['engine']:.1f} | {len(runs)} | {mergekit:.1f} | "
                f"{row['engine'] / mergekit:.3f} |"
            )
        else:
            lines.append(f"| {row['method']} | {row['engine']:.1f} | 0 | — | — |")
    return "\n".join(lines)


def run_floor(workdir: Path, points: int, direct: bool = False) -> dict:
    """(c), or (d) with direct=True, in a subprocess like (a): a plain read/write loop over
    the same bytes."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--floor-child",
            "--workdir",
            str(workdir),
            "--points",
            str(points),
            *(["--direct"] if direct else []),
        ],
        check=True,
    )
    return {"seconds": time.perf_counter() - start}


def floor_child(workdir: Path, points: int, direct: bool) -> None:
    """Read the inputs once (into one buffer, so the copies hold θ_D's bytes, θ_G's sizes) and
    write 11 copies: through the page cache on this thread (c), or past it (O_DIRECT, the
    engine's DirectFile) on two threads, each writing half of the files, as the engine's two
    writer lanes do (d)."""
    from concurrent.futures import ThreadPoolExecutor

    # A floor must not import torch (the mtl.merge package does): direct.py is loaded alone.
    sink = _direct_module().DirectFile if direct else None

    inputs = workdir / "inputs"
    folder = "floor-direct" if direct else "floor"
    outputs = [workdir / folder / f"copy-{i}" for i in range(points)]
    for out in outputs:
        out.mkdir(parents=True)
    chunk = memoryview(bytearray(64 << 20))
    with ThreadPoolExecutor(2) as lanes:
        for shard in sorted((inputs / "theta_general").glob("*.safetensors")):
            with ExitStack() as files:
                general = files.enter_context(open(shard, "rb"))
                sources = [
                    files.enter_context(open(inputs / role / shard.name, "rb"))
                    for role in ("theta_pre", "theta_d")
                ]
                handles = [files.enter_context(open(out / shard.name, "wb")) for out in outputs]
                if sink is None:
                    while n := general.readinto(chunk):
                        for source in sources:
                            source.readinto(chunk[:n])
                        _write_each(chunk[:n], handles)
                    continue
                targets = [sink(handle.fileno()) for handle in handles]
                halves = [targets[0::2], targets[1::2]]
                while n := general.readinto(chunk):
                    for source in sources:
                        source.readinto(chunk[:n])
                    list(lanes.map(partial(_write_each, chunk[:n]), halves))
                for target in targets:
                    target.close()


def _direct_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("direct", ROOT / "scripts/mtl/merge/direct.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_each(data: memoryview, targets: list) -> None:
    for target in targets:
        target.write(data)


def breakdown(workdir: Path, points: int) -> dict[str, float]:
    """Each part of (a)'s pass alone, on this thread, in CPU seconds (time.thread_time: other
    jobs on the machine inflate it less than wall time). The parts are the engine's own
    functions on the benchmark's tensors, for task_arithmetic from finetuned models. There is
    no range check of the outputs: task arithmetic's declared bound proves them in range, and
    the engine skips it."""
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from mtl.hashing import HASH, new_hasher
    from mtl.merge.direct import DirectFile
    from mtl.merge.engine import _blocks
    from mtl.merge.inputs import check_range
    from mtl.merge.safetensors import Checkpoint
    from mtl.merge.shards import Writer

    torch.set_num_threads(1)  # as the engine's pass
    inputs = workdir / "inputs"
    roles = ("theta_general", "theta_pre", "theta_d")
    checkpoints = {role: Checkpoint(inputs / role, role) for role in roles}
    cpu = dict.fromkeys(("read", "upcast and check inputs", "τ = θ_D − θ_pre", "add",
                         "cast to bf16", f"hash ({HASH})", "write"), 0.0)
    sink = workdir / "breakdown"
    sink.mkdir(exist_ok=True)

    @contextmanager
    def part(name: str) -> Iterator[None]:
        start = time.thread_time()
        yield
        cpu[name] += time.thread_time() - start

    with ExitStack() as files:
        files.enter_context(torch.inference_mode())  # as the engine's pass
        handles = [files.enter_context(open(sink / f"out-{i}", "wb")) for i in range(points)]
        outputs = [DirectFile(handle.fileno()) for handle in handles]  # as the engine's
        # As the engine: blocks of rows, each output staged in a buffer hashed and written when
        # full.
        stages = [torch.empty(Writer.STAGE_BYTES, dtype=torch.uint8) for _ in outputs]
        filled = [0] * points
        hashers = [new_hasher() for _ in outputs]

        def flush(i: int) -> None:
            array = stages[i][: filled[i]].numpy()
            with part(f"hash ({HASH})"):
                hashers[i].update(array)
            with part("write"):
                outputs[i].write(array)
            filled[i] = 0

        for name, spec in checkpoints["theta_general"].specs().items():
            for rows in _blocks(spec.shape, elementwise=True):
                with part("read"):
                    raw = {role: checkpoints[role].read(name, rows).clone() for role in roles}
                with part("upcast and check inputs"):
                    x = {role: tensor.float() for role, tensor in raw.items()}
                    for role, value in x.items():
                        check_range(value, f"{role} {name}")
                with part("τ = θ_D − θ_pre"):
                    tau = x["theta_d"] - x["theta_pre"]
                out = torch.empty_like(tau)
                nbytes = tau.numel() * spec.dtype.itemsize
                for i, omega in enumerate(grid(points)):
                    with part("add"):
                        torch.add(x["theta_general"], tau, alpha=omega, out=out)
                    if filled[i] + nbytes > Writer.STAGE_BYTES:
                        flush(i)
                    with part("cast to bf16"):
                        first = filled[i] // spec.dtype.itemsize
                        typed = stages[i].view(spec.dtype)
                        typed[first : first + out.numel()].copy_(out.reshape(-1))
                    filled[i] += nbytes
        for i in range(points):
            flush(i)
            with part("write"):
                outputs[i].close()
    shutil.rmtree(sink)
    for checkpoint in checkpoints.values():
        checkpoint.close()
    return cpu


# ---------------------------------------------------------------------------------------------
# Report


def compare_outputs(workdir: Path, omega: float) -> str:
    """How far (a) and (b) are apart at one grid point, in bf16 units of the output."""
    import torch
    from safetensors.torch import load_file

    def load(folder: Path) -> dict[str, torch.Tensor]:
        tensors = {}
        for file in sorted(folder.glob("*.safetensors")):
            tensors.update(load_file(file))
        return tensors

    ours = load(workdir / "engine" / f"omega-{omega}")
    theirs = load(workdir / "mergekit" / f"omega-{omega}")
    differing = sum(int((ours[n] != theirs[n]).sum()) for n in ours)
    total = sum(t.numel() for t in ours.values())
    biggest = max(float((ours[n].float() - theirs[n].float()).abs().max()) for n in ours)
    summary = f"(a) vs (b) at ω={omega}: {differing / total:.2e} of entries differ"
    if differing:
        summary += f" (max |Δ| {biggest:.2e}: float32 sums rounded to bfloat16 in another order)"
    return summary


def compare_baseline(scripts: Path, before: list[dict], after: list[dict]) -> str:
    """(a) against the baseline engine (a0): run by run (they alternate), and their bytes."""
    pairs = ", ".join(
        f"{b['seconds']:.1f} → {a['seconds']:.1f}" for b, a in zip(before, after, strict=True)
    )
    best = min(r["seconds"] for r in after) / min(r["seconds"] for r in before)
    same = all(b["weights"] == a["weights"] for b, a in zip(before, after, strict=True))
    return (
        f"- (a) against the baseline engine (a0) of {scripts}: {pairs} s run by run; best "
        f"against best {best:.2f}; weight files byte-identical: {'yes' if same else 'NO'}"
    )


def report(
    size: dict, results: dict[str, list[dict]], largest_mb: float, loads: list[float]
) -> str:
    """The table; with --repeat, (a) and (c) count their best run (the least disturbed)."""
    best = {key: min(runs, key=lambda r: r["seconds"]) for key, runs in results.items()}
    a, b, c, d = (best[key]["seconds"] for key in "abcd")
    rss = max(run["max_rss_mb"] for run in results["a"])
    points = size["points"]
    # Each (a) against the (c) that ran just before it (the machine's state then).
    by_run = ", ".join(
        f"{engine['seconds'] / floor['seconds']:.2f}"
        for floor, engine in zip(results["c"], results["a"], strict=True)
    )

    def seconds(key: str) -> str:
        runs = results[key]
        others = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        return f"{best[key]['seconds']:.1f}" + (f" (runs: {others})" if len(runs) > 1 else "")

    return "\n".join(
        [
            "| run | wall time (s) |",
            "|---|---:|",
            f"| (a) mtl.merge: {points} outputs, one pass (with start-up) | {seconds('a')} |",
            f"| (b) mergekit-yaml × {points} | {seconds('b')} |",
            f"| (c) I/O floor: read inputs once, write {points} copies | {seconds('c')} |",
            f"| (d) the same past the page cache (O_DIRECT, two threads) | {seconds('d')} |",
            "",
            f"- (a)/(b) = {a / b:.3f}: {b / a:.1f}× faster than mergekit (goal ≥ 5×: "
            f"{'met' if b / a >= 5 else 'NOT met'})",
            f"- (a)/(c) = {a / c:.2f} (goal ≤ 1.5: {'met' if a / c <= 1.5 else 'NOT met'}); "
            f"(a) without start-up: {best['a']['merge_seconds']:.1f} s",
            f"- (a)/(d) = {a / d:.2f}; (a)/(c) run by run: {by_run}",
            f"- peak RSS of (a): {rss:.0f} MB (goal < 1024 MB + largest tensor "
            f"{largest_mb:.0f} MB: {'met' if rss < 1024 + largest_mb else 'NOT met'})",
            f"- 1-minute load average at the stages' starts: {min(loads):.1f} to {max(loads):.1f} "
            f"on {os.cpu_count()} CPUs",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mtl-bench"))
    parser.add_argument("--quick", action="store_true", help="tiny model, 3-point grid")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (a) and (c), best counts")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic models")
    parser.add_argument("--breakdown", action="store_true", help="CPU seconds per part of (a)")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds to pause before each stage"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout's scripts/ folder: its engine runs as (a0), alternating with (a)",
    )
    parser.add_argument(
        "--methods", help="comma-separated registry names, or `all`: each method against mergekit"
    )
    parser.add_argument(
        "--mergekit-runs", type=int, help="with --methods: time this many of each method's "
        "mergekit runs, spread over the grid (default: one per ω)"
    )
    parser.add_argument("--method", default="task_arithmetic", help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scripts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--outputs", help=argparse.SUPPRESS)
    parser.add_argument("--engine-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_child:
        return engine_child(args.workdir, args.points, args.scripts, args.outputs, args.method)
    if args.floor_child:
        return floor_child(args.workdir, args.points, args.direct)

    if args.methods:
        sys.path.insert(0, str(ROOT / "scripts"))
        from mtl.merge import METHODS, method_named

        methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
        for name in methods:
            method_named(name)  # an unknown name fails before any model is built
    size = QUICK if args.quick else FULL
    workdir = args.workdir
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    log(f"building synthetic models in {workdir}")
    paths = build_models(workdir, size)
    inputs_gb = sum(f.stat().st_size for p in paths.values() for f in p.iterdir()) / 1e9
    largest_mb = (
        max(2 * size["vocab"] * size["hidden"], 2 * size["intermediate"] * size["hidden"]) / 2**20
    )  # bfloat16 embedding or MLP matrix, as stored
    if args.methods:
        rows = run_methods(workdir, size["points"], methods, args.mergekit_runs)
        print(f"\nInputs: 3 models, {inputs_gb:.2f} GB in all; {size['points']}-point grid\n")
        print(methods_report(rows, size["points"]))
        if not args.keep:
            shutil.rmtree(workdir)
        return
    stages = {
        "c": ("(c) I/O floor", run_floor, "floor"),
        "d": ("(d) I/O floor, O_DIRECT", partial(run_floor, direct=True), "floor-direct"),
        "a": ("(a) mtl.merge", run_engine, "engine"),
        "b": ("(b) mergekit-yaml", run_mergekit, "mergekit"),
    }
    if args.baseline:
        baseline = partial(run_engine, scripts=args.baseline.resolve(), outputs="baseline")
        stages["a0"] = ("(a0) baseline engine", baseline, "baseline")
    results: dict[str, list[dict]] = {key: [] for key in stages}
    loads = []
    # (a) runs last before (b), whose outputs are compared with its outputs.
    for key in (["c", "d", "a0", "a"] if args.baseline else ["c", "d", "a"]) * args.repeat + ["b"]:
        title, run, outputs = stages[key]
        shutil.rmtree(workdir / outputs, ignore_errors=True)
        os.sync()  # earlier stages' dirty pages must not throttle this one
        time.sleep(args.settle)  # nor their freed memory be cheaper to write into (docstring)
        loads.append(os.getloadavg()[0])
        log(f"{title} … (load average {loads[-1]:.1f})")
        results[key].append(run(workdir, size["points"]))
        log(f"{title}: {results[key][-1]['seconds']:.1f} s")
    agreement = compare_outputs(workdir, grid(size["points"])[size["points"] // 2])
    print(
        f"\nInputs: 3 models, {inputs_gb:.2f} GB in all (bfloat16, {SHARDS} shards each); "
        f"{size['points']}-point grid\n"
    )
    print(report(size, results, largest_mb, loads))
    print(f"- {agreement}")
    if args.baseline:
        print(compare_baseline(args.baseline, results["a0"], results["a"]))
    if args.breakdown:
        os.sync()
        parts = breakdown(workdir, size["points"])
        total = sum(parts.values())
        print(f"\nWhere (a)'s CPU time goes (each part alone, one thread; {total:.1f} s in all):\n")
        print("| part | CPU s | share |\n|---|---:|---:|")
        for part, seconds in parts.items():
            print(f"| {part} | {seconds:.2f} | {100 * seconds / total:.0f} % |")
    for outputs in ("floor", "floor-direct", "engine", "baseline", "mergekit"):
        shutil.rmtree(workdir / outputs, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
