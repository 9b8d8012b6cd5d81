"""The memory plan of every paper-scale job, from the models' real shapes without any weights.

Each plan builds the job's model objects on torch's meta device through the code the job runs
(transformers' model classes, `mtl.distributed.shard` under a fake process group of the job's
GPU count, `InPlaceMerger` on header-only task-vector files) and sums the bytes they hold. Where
meta tensors cannot show a peak (activations inside a training step, a judge's forward), the
plan runs the real forward on meta and sums what it returns (KV cache, logits), and estimates
the rest per layer, as documented at each estimate. `python -m mtl.memplan --config
config/paper.yaml` prints the table (docs/paper-scale.md); `mtl.preflight` checks a job's plan
against its GPU before the job loads anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtl import benchmarks

GB = 10**9

# Public shapes of the models paper scale loads (their hub config.json files); a job whose model
# folder is on disk plans from that folder's config.json instead.
#   meta-llama/Llama-2-7b-hf, allenai/truthfulqa-{truth,info}-judge-llama2-7B: Llama-2-7B;
#   cais/HarmBench-Llama-2-13b-cls: Llama-2-13B; tomh/toxigen_roberta: roberta-large, 2 labels.
LLAMA_2_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
              "vocab_size": 32000, "max_position_embeddings": 4096}
LLAMA_2_13B = {**LLAMA_2_7B, "hidden_size": 5120, "intermediate_size": 13824,
               "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40}
ROBERTA_LARGE = {"model_type": "roberta", "hidden_size": 1024, "intermediate_size": 4096,
                 "num_hidden_layers": 24, "num_attention_heads": 16, "vocab_size": 50265,
                 "max_position_embeddings": 514, "type_vocab_size": 1, "num_labels": 2}
PUBLIC_SHAPES = {"meta-llama/Llama-2-7b-hf": LLAMA_2_7B}
# Judge key (mtl.judges) -> (public shape, model kind, batch, tokens per row):
# the batch and lengths mtl.judges uses (ToxiGen: 32 texts cut at 512 positions; the causal
# judges score one prompt at a time, planned at the model's full context).
JUDGES = {
    "toxigen": (ROBERTA_LARGE, "classifier", 32, 512),
    "harmbench": (LLAMA_2_13B, "causal", 1, 4096),
    "truthfulqa_truth": (LLAMA_2_7B, "causal", 1, 4096),
    "truthfulqa_info": (LLAMA_2_7B, "causal", 1, 4096),
}


@dataclass
class JobPlan:
    """Peak bytes of one job: on each of its GPUs, and in its host memory (all processes)."""

    job: str
    gpus: int
    gpu: dict[str, int] = field(default_factory=dict)  # part -> bytes on each GPU at the peak
    host: dict[str, int] = field(default_factory=dict)  # part -> bytes at the host's peak
    key: str = ""  # the config key that moves this plan most
    note: str = ""

    @property
    def gpu_bytes(self) -> int:
        return sum(self.gpu.values())

    @property
    def host_bytes(self) -> int:
        return sum(self.host.values())


def nbytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes the tensors hold (a sharded tensor: this rank's shard)."""
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        total += local.numel() * local.element_size()
    return total


def model_config(shape: Mapping, folder: Path | None = None, extra_tokens: int = 0):
    """A transformers config: the folder's config.json if it is there, else the public shape;
    `extra_tokens` rows are added to the vocabulary (the pad token finetuning adds)."""
    from transformers import AutoConfig

    if folder is not None and (Path(folder) / "config.json").is_file():
        config = AutoConfig.from_pretrained(folder)
    else:
        values = dict(shape)
        config = AutoConfig.for_model(values.pop("model_type"), **values)
    config.vocab_size += extra_tokens
    return config


def meta_model(config, dtype: torch.dtype, kind: str = "causal") -> torch.nn.Module:
    """The model a job loads, with every tensor on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    loader = AutoModelForSequenceClassification if kind == "classifier" else AutoModelForCausalLM
    with torch.device("meta"):
        return loader.from_config(config, dtype=dtype).eval()


def forward_outputs(model: torch.nn.Module, batch: int, tokens: int) -> int:
    """Bytes of what one forward of `batch` × `tokens` returns (logits, KV cache), on meta."""
    ids = torch.zeros(batch, tokens, dtype=torch.long, device="meta")
    with torch.no_grad():
        out = model(input_ids=ids)
    held = [out.logits]
    cache = getattr(out, "past_key_values", None)
    for layer in getattr(cache, "layers", []):
        held += [layer.keys, layer.values]
    return nbytes(held)


def layer_transient(config, batch: int, tokens: int, itemsize: int) -> int:
    """Estimate: one decoder layer's intermediates at once (the freshly computed tensors of
    attention and the MLP: q, k, v, attention out, gate, up, their product, down; the caching
    allocator frees each layer's before the next), for a forward without autograd."""
    return batch * tokens * (5 * config.hidden_size + 3 * config.intermediate_size) * itemsize


@contextlib.contextmanager
def fake_world(size: int) -> Iterator[None]:
    """A process group of `size` ranks that moves no data: FSDP shards as it would on `size`
    GPUs, and this process holds rank 0's shard."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("memory plan: a process group is already running in this process")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def plan_finetune(config, *, gpus: int, micro_batch: int, max_len: int, mixed_precision: str,
                  activation_checkpointing: bool, host_workers: int | None = None) -> JobPlan:
    """A finetuning job: every GPU's FSDP2 shard of fp32 weights, gradients and AdamW states,
    the layers FSDP gathers, and the activations of one micro-batch."""
    from mtl.distributed import Parallel, shard

    model = meta_model(config, torch.float32)
    full = nbytes(model.parameters())
    layer = nbytes(model.model.layers[0].parameters())
    root = full - layer * len(model.model.layers)
    with fake_world(gpus):
        shard(model, torch.device("cpu"), Parallel(gpus, mixed_precision,
                                                   activation_checkpointing))
        shard_bytes = nbytes(model.parameters())
    compute = 2 if mixed_precision == "bf16" else 4
    tokens = micro_batch * max_len
    hidden, vocab = config.hidden_size, config.vocab_size
    gpu = {
        "fp32 weights (shard)": shard_bytes,
        "fp32 gradients (shard)": shard_bytes,
        # torch AdamW: exp_avg and exp_avg_sq, each the parameter's shape and dtype.
        "AdamW states (shard)": 2 * shard_bytes,
        # FSDP2 keeps the root (embeddings, final norm, LM head) gathered through the step and
        # gathers one layer while prefetching the next; backward adds one layer's unsharded
        # gradients in the fp32 reduce dtype.
        "gathered root + 2 layers": (root + 2 * layer) // 4 * compute,
        "unsharded layer gradients": layer + root,
        # Estimate: with checkpointing each layer keeps its input (tokens × hidden) and
        # backward recomputes one layer at a time with autograd's saved tensors (about twice
        # the forward intermediates); without it, every layer keeps them.
        "activations": (len(model.model.layers) * tokens * hidden * compute
                        + (1 if activation_checkpointing else len(model.model.layers))
                        * 2 * layer_transient(config, micro_batch, max_len, compute)),
        # Logits in the compute dtype, their float32 copy for the loss, the loss's
        # log-softmax and the gradient of each (mtl.training's cross-entropy).
        "logits and loss": tokens * vocab * (2 * compute + 3 * 4),
    }
    # Every worker loads the fp32 checkpoint on the host before sharding it (mtl.distributed).
    workers = host_workers or gpus
    host = {f"fp32 model loaded by {workers} worker(s)": workers * full,
            "rank 0's gathered bf16 copy at save": full // 2}
    return JobPlan(f"finetune ({gpus} GPU)", gpus, gpu, host,
                   key="training.finetune.micro_batch / resources.finetune.gpu")


def plan_evaluate(config, *, batch: int, tokens: int, skills: int = 0,
                  method: str = "task_arithmetic", judges: Mapping[str, int] | None = None
                  ) -> JobPlan:
    """`evaluate_model` (skills=0) or `evaluate_merge` of `skills` task vectors: the bf16 model
    on one GPU, the merger's scratch beside it, and lm-eval's largest batch; the merger's copies
    in host memory; each judge loads while the evaluated model waits on the host."""
    model = meta_model(config, torch.bfloat16)
    weights = nbytes(model.parameters())
    gpu = {"bf16 model": weights,
           f"forward outputs (batch {batch} × {tokens})": forward_outputs(model, batch, tokens),
           "one layer's intermediates": layer_transient(config, batch, tokens, 2)}
    host = {"bf16 model while loading": weights}
    if skills:
        held, scratch = merger_memory(model, skills, method)
        gpu["merger scratch (float32)"] = scratch
        host = {"merger copies (θ_G + task vectors)": held}
    job = f"evaluate_merge ({skills} skill{'s' * (skills > 1)})" if skills else "evaluate_model"
    plan = JobPlan(job, 1, gpu, host, key="evaluation.batch_size")
    if judges:
        # The evaluated model waits on the host while a judge runs (mtl.judges.make_room);
        # the merger's scratch stays on the GPU.
        judging = {"largest judge": max(judges.values()),
                   "merger scratch (float32)": gpu.get("merger scratch (float32)", 0)}
        if sum(judging.values()) > plan.gpu_bytes:
            plan.gpu = judging
        plan.host["evaluated model while a judge runs"] = weights
    return plan


def plan_judge(key: str, folder: Path | None = None) -> JobPlan:
    """One judge in bf16 on the GPU with its largest batch (mtl.judges)."""
    shape, kind, batch, tokens = JUDGES[key]
    model = meta_model(model_config(shape, folder), torch.bfloat16, kind)
    gpu = {"bf16 judge": nbytes(model.parameters()),
           f"forward outputs (batch {batch} × {tokens})": forward_outputs(model, batch, tokens)}
    return JobPlan(f"judge {key}", 1, gpu, {"bf16 judge while loading": gpu["bf16 judge"]},
                   key=f"evaluation.benchmarks (the tasks judged by {key})")


def plan_task_vector(config) -> JobPlan:
    """τ = θ_D − θ_pre on the host (no GPU), streamed tensor by tensor by the merge engine.

    Estimate: the largest tensor in float32 four times (θ_D's, θ_pre's, τ and the write
    buffer); the engine's staging buffers are of that order (docs/speed.md, "Merging").
    """
    model = meta_model(config, torch.float32)
    largest = max(nbytes([p]) for p in model.parameters())
    return JobPlan("task_vector", 0, {}, {"streamed tensors": 4 * largest}, key="resources.merge")


def evaluation_plan(model_dir: Path, *, skills: int, method: str, batch_size: int | str,
                    judges: Iterable[str], judge_root: Path) -> JobPlan:
    """The plan of an evaluation job, from its model folder's config.json (no weights read)."""
    config = model_config({}, model_dir)
    batch = 1 if batch_size == "auto" else int(batch_size)
    judge_peaks = {key: plan_judge(key, judge_root / key).gpu_bytes for key in judges
                   if key in JUDGES}
    return plan_evaluate(config, batch=batch, tokens=config.max_position_embeddings,
                         skills=skills, method=method, judges=judge_peaks)


def finetune_disk(config) -> int:
    """Disk a finetuning run needs at its peak: a resume checkpoint (fp32 weights and two AdamW
    states) being written beside the previous one, and the consolidated bf16 model twice (the
    run's work folder, then the output)."""
    weights = nbytes(meta_model(config, torch.float32).parameters())
    return 2 * 3 * weights + 2 * weights // 2


def merger_memory(model: torch.nn.Module, skills: int, method: str) -> tuple[int, int]:
    """(host bytes an InPlaceMerger of `model` holds, GPU bytes of its scratch buffers).

    The host side is the real merger built on the meta model over header-only task-vector
    files; the scratch side is the roles a real merge of a tiny model allocates (one float32
    buffer each, sized to the largest tensor), plus one streamed input in flight.
    """
    from mtl.merge import InPlaceMerger

    largest = max(p.numel() for p in model.parameters()) * 4
    with tempfile.TemporaryDirectory(prefix="mtl-memplan-") as tmp:
        paths = [_header_only(model, Path(tmp) / f"tau{k}.safetensors") for k in range(skills)]
        merger = InPlaceMerger(model, paths, method=method)
        held = nbytes(merger.held())
        roles = _scratch_roles(skills, method, Path(tmp))
    return held, (roles + 1) * largest


def _scratch_roles(skills: int, method: str, folder: Path) -> int:
    """How many scratch buffers one apply of `method` with `skills` task vectors fills."""
    from safetensors.torch import save_file

    from mtl.merge import InPlaceMerger

    tiny = torch.nn.Linear(4, 3)
    paths = []
    for k in range(skills):
        path = folder / f"tiny{k}.safetensors"
        generator = torch.Generator().manual_seed(k)
        save_file({name: torch.randn(p.shape, generator=generator) * 0.01
                   for name, p in tiny.named_parameters()}, path,
                  metadata={"format": "pt", "mtl_kind": "task_vector"})
        paths.append(path)
    merger = InPlaceMerger(tiny, paths, method=method)
    merger.apply([1.0 / skills] * skills)
    # Each buffer has grown to the largest tensor it held: the weight, 4 × 3 float32 values.
    return merger.scratch_bytes() // (tiny.weight.numel() * 4)


def _header_only(model: torch.nn.Module, path: Path) -> Path:
    """A task-vector file of `model`'s float32 shapes with a real header and no data (sparse)."""
    from mtl.merge.inplace import _file_names

    header: dict[str, object] = {"__metadata__": {"format": "pt", "mtl_kind": "task_vector",
                                                  **_model_type(model)}}
    offset = 0
    for name, param in _file_names(model).items():
        size = param.numel() * 4
        header[name] = {"dtype": "F32", "shape": list(param.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little") + encoded)
    os.truncate(path, 8 + len(encoded) + offset)
    return path


def _model_type(model: torch.nn.Module) -> dict[str, str]:
    config = getattr(model, "config", None)
    return {"model_type": config.model_type} if getattr(config, "model_type", None) else {}


def fits(plan: JobPlan, gpu_bytes: int | None, host_bytes: int | None = None) -> list[str]:
    """What of `plan` does not fit a GPU of `gpu_bytes` (per GPU) and `host_bytes` of memory."""
    problems = []
    if gpu_bytes is not None and plan.gpus and plan.gpu_bytes > gpu_bytes:
        problems.append(f"{plan.gpu_bytes / GB:.1f} GB per GPU > the GPU's {gpu_bytes / GB:.1f} GB")
    if host_bytes is not None and plan.host_bytes > host_bytes:
        problems.append(f"{plan.host_bytes / GB:.1f} GB of host memory > the job's "
                        f"{host_bytes / GB:.1f} GB")
    return problems


def paper_plans(config: Mapping, skills: int = 3) -> list[JobPlan]:
    """Every job kind of a paper-scale config, from its model's shape (or the stand-in's)."""
    model = config["model"]
    if model["base"] == "standin":
        spec = model["standin"]
        shape = {"model_type": "llama", "hidden_size": spec["hidden"],
                 "intermediate_size": spec["intermediate"], "num_hidden_layers": spec["layers"],
                 "num_attention_heads": spec["heads"],
                 "num_key_value_heads": spec.get("kv_heads", spec["heads"]),
                 "vocab_size": spec["vocab"], "max_position_embeddings": spec["max_positions"]}
    else:
        if model["base"] not in PUBLIC_SHAPES:
            raise ValueError(f"memory plan: no shape known for model.base {model['base']!r}; "
                             f"known: {sorted(PUBLIC_SHAPES)}")
        shape = PUBLIC_SHAPES[model["base"]]
    # Finetuning adds one pad token (mtl.chat); every later job holds the finetuned shape.
    tuned = model_config(shape, extra_tokens=1)
    train, parallel = config["training"]["finetune"], config["training"].get("parallel", {})
    gpus = int(config["resources"]["finetune"]["gpu"]) or int(parallel.get("processes", 1))
    evaluation = config.get("evaluation", {})
    batch = evaluation.get("batch_size", 1)
    batch = 1 if batch == "auto" else int(batch)
    # The judges the configured benchmarks' tasks load (mtl.benchmarks).
    names = benchmarks.configured(evaluation, toy=config.get("scale") == "toy")
    judges = {key: plan_judge(key).gpu_bytes for key in benchmarks.judges(names)
              if key in JUDGES}
    method = config.get("merge", {}).get("method", "task_arithmetic")
    plans = [plan_finetune(tuned, gpus=gpus, micro_batch=int(train["micro_batch"]),
                           max_len=int(train["max_len"]),
                           mixed_precision=parallel.get("mixed_precision", "no"),
                           activation_checkpointing=parallel.get("activation_checkpointing",
                                                                 False)),
             plan_task_vector(tuned)]
    for k in range(skills + 1):
        plans.append(plan_evaluate(tuned, batch=batch, tokens=tuned.max_position_embeddings,
                                   skills=k, method=method, judges=judges))
    plans += [plan_judge(key) for key in judges]
    return plans


def table(plans: Iterable[JobPlan], gpu_bytes: int) -> str:
    """The plans as a Markdown table, each GPU peak against `gpu_bytes`."""
    lines = ["| job | GPUs | peak GB per GPU | host GB | fits | largest parts (GB) |",
             "|---|---|---|---|---|---|"]
    for plan in plans:
        parts = sorted({**plan.gpu, **{f"host: {k}": v for k, v in plan.host.items()}}.items(),
                       key=lambda item: -item[1])[:3]
        shown = "; ".join(f"{name} {value / GB:.1f}" for name, value in parts)
        ok = "yes" if not fits(plan, gpu_bytes) else "NO"
        lines.append(f"| {plan.job} | {plan.gpus} | {plan.gpu_bytes / GB:.1f} | "
                     f"{plan.host_bytes / GB:.1f} | {ok} | {shown} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", required=True,
                        help="config files, layered in order on config/config.yaml")
    parser.add_argument("--gpu-gb", type=float, default=80.0, help="GPU memory to plan for")
    parser.add_argument("--skills", type=int, default=3, help="most skills merged at once")
    args = parser.parse_args(argv)
    config: dict = {}
    for file in [Path(__file__).parents[2] / "config" / "config.yaml", *args.config]:
        _layer(config, yaml.safe_load(Path(file).read_text()) or {})
    plans = paper_plans(config, args.skills)
    print(table(plans, int(args.gpu_gb * GB)))
    return 0 if all(not fits(p, int(args.gpu_gb * GB)) for p in plans) else 1


def _layer(base: dict, over: Mapping) -> None:
    """Snakemake's layering of config files: mappings merge key by key, the rest replaces."""
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _layer(base[key], value)
        else:
            base[key] = value


if __name__ == "__main__":
    raise SystemExit(main())
