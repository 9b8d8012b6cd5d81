"""The streaming engine: task vectors and merged models written in one pass over the inputs."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from mtl.hashing import hash_file
from mtl.io import atomic_dir, atomic_file, write_json
from mtl.merge.card import model_card, portable
from mtl.merge.checkpoints import Inputs, block_shape, open_inputs
from mtl.merge.checks import (
    check_config,
    check_floating,
    check_out_dirs,
    check_out_file,
    check_tensors,
    weight_rows,
)
from mtl.merge.inputs import Scratch
from mtl.merge.mergekit import mergekit_yaml
from mtl.merge.methods import Method, method_named
from mtl.merge.options import EngineOptions, MergeError
from mtl.merge.safetensors import INDEX, PICKLE_SUFFIXES, Checkpoint, Rows, Spec, dtype_name
from mtl.merge.shards import Shard, StreamedFile, Writer, plan_shards

# Elementwise methods go through big tensors in blocks of about this many entries (1 MB in
# float32). Every step of a block (upcast, τ, then per ω: add, cast) is one torch op, and an op
# costs microseconds of dispatch and Python however small it is, so small blocks pay mostly
# overhead; large ones spill out of the CPU caches. On the 2-core benchmark machine
# (`scripts/bench_merge.py`, task arithmetic, 11 outputs) the merging process used 12.7-13.5
# CPU-s with 2^15-entry blocks, 11.2-11.4 with 2^16, 10.2-11.1 with 2^18 and 9.6-11.0 with 2^19
# (three runs each, all else equal). Memory stays flat however large the tensors are.
_BLOCK_ELEMENTS = 1 << 18


def _blocks(shape: tuple[int, ...], elementwise: bool) -> list[Rows]:
    """Row blocks covering a tensor, or [None] when it must be merged whole."""
    if not elementwise or not shape or shape[0] == 0:
        return [None]
    step = max(1, _BLOCK_ELEMENTS // max(1, math.prod(shape[1:])))
    return [(first, min(first + step, shape[0])) for first in range(0, shape[0], step)]


@contextmanager
def pass_mode() -> Iterator[None]:
    """How torch runs during a pass over files: on the calling thread only, without autograd.

    The pass is I/O-bound and its ops are small; intra-op worker threads would compete for
    cores with the writer threads and the kernel's writeback, and a parallel op waits for its
    slowest worker (on a 2-core machine two threads made the pass 5x slower than one).
    Inference mode skips autograd's bookkeeping, which costs microseconds per op: the pass
    makes hundreds of thousands of small ops and views.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(threads)


def extract_task_vector(
    theta_pre: Path,
    theta_d: Path,
    out: Path,
    *,
    resize_vocab: Literal["pad"] | None = None,
    progress: bool = True,
) -> str:
    """Write τ_D = θ_D − θ_pre to the safetensors file `out` (atomically); return its hash.

    τ is stored in float32 whatever the models' dtype: it is the small difference of two large
    numbers, exact in float32 for bf16/fp16 models but rounded again if stored in their dtype.
    Tensor names are θ_D's; the metadata records both inputs and θ_D's model_type, so merges
    can check the architecture and name a mergekit recipe. With resize_vocab="pad", rows θ_pre
    lacks get τ = 0 (the extra tokens keep θ_G's embedding when τ is added to θ_G).
    """
    options = EngineOptions(resize_vocab=resize_vocab, progress=progress)
    out = Path(out)
    with ExitStack() as stack:
        d = Checkpoint(theta_d, "theta_d")
        stack.callback(d.close)
        pre = Checkpoint(theta_pre, "theta_pre")
        stack.callback(pre.close)
        specs = d.specs()
        check_floating(specs, d.label)
        check_config(d.config, d.label, pre)
        check_tensors(specs, d.label, pre, is_model=True, options=options)
        check_out_file(out, [pre.path, d.path])

        out_specs = {name: Spec(torch.float32, spec.shape) for name, spec in specs.items()}
        metadata = {
            "format": "pt",
            "mtl_kind": "task_vector",
            "theta_pre": portable(pre.path),
            "theta_d": portable(d.path),
        }
        if d.config and "model_type" in d.config:
            metadata["model_type"] = str(d.config["model_type"])
        (shard,) = plan_shards(out_specs, math.inf, metadata)
        inputs = Inputs(general=d, pre=pre, skills=[], skills_are_tau=True)
        blocks = {name: _blocks(spec.shape, elementwise=True) for name, spec in specs.items()}
        scratch = Scratch()
        stack.enter_context(pass_mode())
        handle = stack.enter_context(atomic_file(out, "wb"))
        writer = stack.enter_context(Writer(_largest_block(out_specs, blocks), n_files=1))
        file = StreamedFile(handle, shard.header, writer, options.direct_io)
        for name in tqdm(shard.names, desc=f"task vector {out.name}", disable=not progress):
            for rows in blocks[name]:
                # τ_D is TensorInputs' τ_G with θ_D in θ_G's place: θ_pre's missing vocabulary
                # rows are padded with θ_D's, which makes τ zero there.
                x = inputs.block(name, rows, specs[name].shape, options, scratch)
                file.write(x.tau_general, torch.float32, f"task vector {out}: tensor {name!r}")
        file.close()  # the last block out; atomic_file closes the handle after the writer
    return file.digest  # after the writer thread has finished


def _largest_block(specs: Mapping[str, Spec], blocks: Mapping[str, list[Rows]]) -> int:
    return max(
        math.prod(block_shape(spec.shape, rows)) * spec.dtype.itemsize
        for name, spec in specs.items()
        for rows in blocks[name]
    )


def merge_to_disk(
    method: str,
    theta_general: Path,
    settings: Sequence[Sequence[float] | float],
    out_dirs: Sequence[Path],
    *,
    theta_pre: Path | None = None,
    task_vectors: Sequence[Path] = (),
    finetuned: Sequence[Path] = (),
    options: Mapping[str, Any] | EngineOptions = {},  # noqa: B006 - never mutated
) -> list[dict[str, Any]]:
    """Write one merged model per weight setting, reading every input tensor once.

    method:        a key of METHODS.
    theta_general: θ_G, a model folder (its config, tokenizer and other small files are copied
                   into every output).
    settings:      one weight vector (ω_1, …, ω_K) per output, K = number of skill inputs; a
                   bare number stands for a 1-skill vector, so an ω grid is [0.0, 0.1, …, 1.0].
    out_dirs:      one folder per setting, each written atomically (replacing an old one).
    theta_pre:     θ_pre; needed by ties/dare/dare_ties, to get τ_k from finetuned models and
                   to get θ_k from task vectors (linear, wise_ft).
    task_vectors | finetuned: the K skill inputs, as task vector files or as finetuned models
                   (θ_D, or θ_CFT for wise_ft).
    options:       EngineOptions fields (density, normalize, seed, resize_vocab, shard_size, …).

    Every output folder holds safetensors shards in θ_G's dtype, θ_G's small files, README.md
    (a model card naming the recipe) and, where mergekit has the method and the inputs are
    models it can read, mergekit_config.yml. Returns per output
    {"path": str, "files": {filename: "blake3:…"}, "recipe": {...}} (mtl.hashing's hash).
    """
    spec = method_named(method)
    opts = EngineOptions.of(options)
    theta_general = Path(theta_general)
    out_dirs = [Path(d) for d in out_dirs]
    with ExitStack() as stack:
        general = Checkpoint(theta_general, "theta_general")
        stack.callback(general.close)
        if general.config is None:
            raise MergeError(f"{theta_general}: θ_G must be a model folder with a config.json")
        specs = general.specs()
        check_floating(specs, general.label)
        inputs = open_inputs(
            spec,
            specs,
            general.config,
            general.label,
            general=general,
            theta_pre=theta_pre,
            task_vectors=[Path(p) for p in task_vectors],
            finetuned=[Path(p) for p in finetuned],
            options=opts,
        )
        stack.callback(inputs.close)
        weights = weight_rows(settings, len(inputs.skills))
        input_paths = [c.path for c in (general, inputs.pre, *inputs.skills) if c is not None]
        check_out_dirs(out_dirs, len(weights), input_paths)

        shards = plan_shards(specs, opts.shard_size, {"format": "pt"})
        folders = [stack.enter_context(atomic_dir(d)) for d in out_dirs]
        shard_hashes = _stream_merge(spec, inputs, specs, weights, out_dirs, folders, shards, opts)
        return [
            _finish_folder(folder, out, inputs, spec, omega, opts, shards, specs, hashes)
            for folder, out, omega, hashes in zip(
                folders, out_dirs, weights, shard_hashes, strict=True
            )
        ]


def _stream_merge(
    method: Method,
    inputs: Inputs,
    specs: Mapping[str, Spec],
    weights: Sequence[tuple[float, ...]],
    out_dirs: Sequence[Path],
    folders: Sequence[Path],
    shards: Sequence[Shard],
    options: EngineOptions,
) -> list[dict[str, str]]:
    """The one pass: for each tensor (or block of rows), read the inputs once and write the
    merge to every output."""
    blocks = {name: _blocks(spec.shape, method.elementwise) for name, spec in specs.items()}
    scratch = Scratch()
    written: list[dict[str, StreamedFile]] = [{} for _ in folders]
    with ExitStack() as stack:
        stack.enter_context(pass_mode())
        # Registered before the writer, so files close only after its thread has finished.
        handles = stack.enter_context(ExitStack())
        writer = stack.enter_context(Writer(_largest_block(specs, blocks), n_files=len(folders)))
        progress = stack.enter_context(
            tqdm(
                total=sum(s.nbytes for s in specs.values()),
                unit="B",
                unit_scale=True,
                desc=f"{method.name} → {len(folders)} model(s)",
                disable=not options.progress,
            )
        )
        for shard in shards:
            files = [
                StreamedFile(
                    handles.enter_context(open(f / shard.filename, "wb")),
                    shard.header,
                    writer,
                    options.direct_io,
                )
                for f in folders
            ]
            for name in shard.names:
                spec = specs[name]
                whats = [f"output {out_dir}: tensor {name!r}" for out_dir in out_dirs]
                # Outputs whose method bounds them below this need no range check.
                trusted = torch.finfo(spec.dtype).max / 2
                for rows in blocks[name]:
                    x = inputs.block(name, rows, spec.shape, options, scratch)
                    out = scratch.get("out", x.shape)
                    for omega, file, what in zip(weights, files, whats, strict=True):
                        merged = method(x, omega, out)
                        proved = method.bound is not None and method.bound(x, omega) <= trusted
                        file.write(merged, spec.dtype, what, check=not proved)
                    progress.update(math.prod(x.shape) * spec.dtype.itemsize)
            for file, output_files in zip(files, written, strict=True):
                file.close()
                output_files[shard.filename] = file
    # The writer thread has finished, so every file is complete and hashed.
    return [{name: file.digest for name, file in files.items()} for files in written]


_NOT_COPIED = {"README.md", "mergekit_config.yml", INDEX}


def _finish_folder(
    folder: Path,
    out: Path,
    inputs: Inputs,
    method: Method,
    omega: tuple[float, ...],
    options: EngineOptions,
    shards: Sequence[Shard],
    specs: Mapping[str, Spec],
    shard_hashes: Mapping[str, str],
) -> dict[str, Any]:
    """Add θ_G's small files, the shard index, the model card and the mergekit recipe."""
    for file in sorted(inputs.general.path.iterdir()):
        if (
            file.is_file()
            and not file.name.startswith(".")
            and file.name not in _NOT_COPIED
            and file.suffix not in (".safetensors", *PICKLE_SUFFIXES)
        ):
            shutil.copy2(file, folder / file.name)
    if len(shards) > 1:
        weight_map = {name: shard.filename for shard in shards for name in shard.names}
        total = sum(spec.nbytes for spec in specs.values())
        write_json(folder / INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})
    dtype = dtype_name(next(iter(specs.values())).dtype)
    recipe = inputs.describe(method, omega, options, dtype)
    config_yaml = mergekit_yaml(method, inputs, omega, options, dtype)
    if config_yaml is not None:
        (folder / "mergekit_config.yml").write_text(config_yaml)
    files = dict(shard_hashes)
    for file in sorted(folder.iterdir()):
        if file.name not in files:
            files[file.name] = hash_file(file)
    (folder / "README.md").write_text(model_card(out, recipe, config_yaml, files))
    files["README.md"] = hash_file(folder / "README.md")
    return {"path": str(out), "files": dict(sorted(files.items())), "recipe": recipe}
