"""Train one model: θ_pre (toy pretraining), θ_G, or a regime (ptm, cft, rt, cft-match).

Reads the init model (or builds the toy architecture), gives a base model's tokenizer the
configured chat format and a pad token (mtl.chat), tokenizes its data, trains with checkpoints in
params.resume_dir (resumed when a run is restarted), and writes the model folder atomically in
Hugging Face format. One process trains in this one (the toy world on a CPU); with GPUs, or with
several CPU processes (the stand-in), torchrun starts one sharded worker per process
(mtl.distributed) and rank 0 writes the consolidated model.
"""

import dataclasses
import os
import random
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mtl.chat import prepare
from mtl.cluster import gpus_given
from mtl.distributed import Parallel, launch
from mtl.io import atomic_dir, read_jsonl, write_json
from mtl.memplan import finetune_disk, model_config, plan_finetune
from mtl.preflight import check_disk, check_plan, gpu_memory
from mtl.provenance import Step, hash_file, load_record
from mtl.regimes import REGIMES
from mtl.stepkit import numerics_settings, setup
from mtl.toy_model import build_model
from mtl.training import (
    TrainConfig,
    clear_checkpoint,
    encode_chat,
    encode_corpus,
    fingerprint,
    train,
)

smk = snakemake
params = smk.params
log = setup(smk, seed=params.seed)
regime = params.regime
cfg = TrainConfig(
    lr=params.train["lr"],
    batch_size=params.train["batch_size"],
    epochs=params.train["epochs"],
    warmup_ratio=params.train["warmup_ratio"],
    weight_decay=params.train["weight_decay"],
    max_len=params.train["max_len"],
    micro_batch=params.train.get("micro_batch"),
    # From the config, not params: how often a run checkpoints changes no output.
    checkpoint_every=smk.config["training"]["checkpoint_every"],
    seed=params.seed,
)
dtype = getattr(torch, params.dtype)
# Paper-scale finetuning: chat template for a base model without one, and how many processes;
# on a CPU a toy run may train in `processes` gloo workers (a fixed count: the same bytes anywhere).
paper = params.get("parallel") is not None
parallel = (Parallel(**params.parallel) if paper
            else Parallel(processes=params.train.get("processes", 1)))
if paper and smk.resources.get("gpu", 0):
    # One worker per GPU the job was given (the global batch stays; accumulation adapts).
    given = gpus_given(os.environ, smk.resources["gpu"])
    if given < 1:
        raise RuntimeError(f"the job asked for {smk.resources['gpu']} GPUs and was given none "
                           "(CUDA_VISIBLE_DEVICES is empty)")
    if given != parallel.processes:
        log.warning("%d GPUs given, %d asked for: training in %d workers", given,
                    parallel.processes, given)
    parallel = dataclasses.replace(parallel, processes=given)
distributed = parallel.processes > 1 or (paper and torch.cuda.is_available())
if paper and regime != "pretrain":
    # Before anything loads: the run fits its GPUs, and the disk holds its checkpoints.
    shape = model_config({}, Path(smk.input.init), extra_tokens=1)
    if gpu_memory() is not None:
        check_plan(plan_finetune(shape, gpus=parallel.processes, micro_batch=cfg.micro_batch
                                 or cfg.batch_size, max_len=cfg.max_len,
                                 mixed_precision=parallel.mixed_precision,
                                 activation_checkpointing=parallel.activation_checkpointing),
                   smk.resources.get("mem_mb"))
    check_disk(Path(params.resume_dir), finetune_disk(shape), "a resume checkpoint and the model")

with Step.from_snakemake(smk, seed=params.seed) as step:
    # ---- model and tokenizer
    if regime == "pretrain":
        tokenizer = AutoTokenizer.from_pretrained(smk.input.tokenizer)
        arch = params.architecture
        model = build_model(
            len(tokenizer), arch["hidden"], arch["layers"], arch["heads"],
            arch["intermediate"], arch["max_positions"], tokenizer,
        )
        init_id = fingerprint(arch, hash_file(Path(smk.input.tokenizer) / "tokenizer.json"))
    else:
        tokenizer = AutoTokenizer.from_pretrained(smk.input.init)
        model = AutoModelForCausalLM.from_pretrained(smk.input.init, dtype=torch.float32)
        init_id = load_record(smk.input.init)["hash"]
        prepare(tokenizer, model, params.chat_template if paper else None)
    log.info("%s: %.2fM parameters", regime, sum(p.numel() for p in model.parameters()) / 1e6)

    # ---- data
    truncated_away = 0
    if regime == "pretrain":
        examples = encode_corpus(read_jsonl(smk.input.corpus, required=("text",)), tokenizer,
                                 cfg.max_len)
    else:
        # One skill's subset, or several (a skillset: CFT or RT on D_1 ∪ … ∪ D_K).
        skill_files = [smk.input.data] if isinstance(smk.input.data, str) else smk.input.data
        rows = [row for path in skill_files for row in read_jsonl(path, required=("messages",))]
        mix = REGIMES[regime].general if regime in REGIMES else "none"
        if mix != "none":
            general = read_jsonl(smk.input.general, required=("messages",))
            if mix == "match":
                # "Match" mixes add as many general examples as the skill has (the paper's
                # WiSE-FT figure); the draw is seeded so reruns pick the same rows.
                general = random.Random(params.seed).sample(general, min(len(rows),
                                                                         len(general)))
            rows = general + rows
        examples = encode_chat(rows, tokenizer, cfg.max_len,
                               source=", ".join(map(str, skill_files)))
        # Rows whose answers lie wholly past max_len are dropped; the record counts them.
        truncated_away = len(rows) - len(examples)
        if not examples:
            raise ValueError(f"{', '.join(map(str, skill_files))}: every row's answer lies past "
                             f"max_len {cfg.max_len} tokens")
    data_files = [f for f in smk.input if not Path(f).is_dir()]
    log.info("%d training sequences from %s; %d rows dropped, their answers past max_len %d",
             len(examples), ", ".join(map(str, data_files)), truncated_away, cfg.max_len)

    # ---- train (resumable) and save
    run_id = fingerprint(regime, init_id, [hash_file(f) for f in data_files], cfg.__dict__,
                         *([parallel.__dict__, tokenizer.chat_template] if paper
                           else [parallel.__dict__] if distributed else []))
    resume_dir = Path(params.resume_dir)
    if distributed:
        init = resume_dir / "init" if regime == "pretrain" else Path(smk.input.init)
        if regime == "pretrain":
            # The workers load their start from disk: the freshly built θ_pre init.
            model.save_pretrained(init, safe_serialization=True)
        del model  # each worker loads its own copy and keeps only its shard
        # Rank 0 writes the consolidated model into the run's work folder, not the output:
        # a job killed mid-run must leave nothing beside the results.
        consolidated = resume_dir / "consolidated"
        # A toy run's bytes must not depend on the job's threads: each worker gets the pinned
        # count (numerics.threads), as the single-process path does.
        pinned = numerics_settings(params.numerics)["threads"]
        worker_threads = pinned * parallel.processes if pinned and not paper else smk.threads
        summary = launch(init=init, tokenizer=tokenizer, examples=examples,
                         cfg=cfg, parallel=parallel, resume_dir=resume_dir, run_id=run_id,
                         out=consolidated, dtype=params.dtype, threads=worker_threads,
                         seed=params.seed)
    else:
        summary = train(model, examples, cfg, tokenizer.pad_token_id, resume_dir, run_id)
        model.to(dtype)
    with atomic_dir(smk.output.artifact) as tmp:
        if distributed:
            for file in sorted(consolidated.iterdir()):
                shutil.move(file, tmp / file.name)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # Only facts that are the same on every rerun go inside the artifact (wall time, resume
        # points and how often they were taken live in the provenance record), so reruns are
        # byte-identical.
        write_json(Path(tmp) / "training_summary.json",
                   {"regime": regime, "steps": summary["steps"],
                    "examples": summary["examples"], "final_loss": summary["final_loss"],
                    "config": {k: v for k, v in summary["config"].items()
                               if k != "checkpoint_every"}})
    clear_checkpoint(resume_dir)
    if regime != "pretrain":
        # The subset step drops rows with an empty answer (mtl.chat.check_rows); how many of
        # each file is stated with the model trained on what was left.
        step.note(dropped_empty_answers={
            f: load_record(f)["notes"].get("dropped_empty_answers", 0) for f in data_files})
    step.note(regime=regime, run_id=run_id, parallel=parallel.__dict__,
              truncated_away=truncated_away,
              **{k: summary[k] for k in ("steps", "examples", "final_loss", "resumed_from_step",
                                         "padding_share", "processes", "seconds")})
