"""The memory plan (mtl.memplan) against the objects the real code holds, and the job-start
checks (mtl.preflight) that stop a job before it loads anything."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from mtl import memplan, preflight
from mtl.merge import InPlaceMerger

REPO = Path(__file__).resolve().parents[1]
STANDIN = yaml.safe_load((REPO / "config" / "standin.yaml").read_text())["model"]["standin"]


def llama_parameters(h: int, i: int, layers: int, vocab: int) -> int:
    """Llama's parameter count from its public shape: embeddings and LM head, per layer four
    attention projections, three MLP projections and two norms, and the final norm."""
    return 2 * vocab * h + layers * (4 * h * h + 3 * h * i + 2 * h) + h


def standin_config():
    shape = {"model_type": "llama", "hidden_size": STANDIN["hidden"],
             "intermediate_size": STANDIN["intermediate"],
             "num_hidden_layers": STANDIN["layers"], "num_attention_heads": STANDIN["heads"],
             "num_key_value_heads": STANDIN["heads"], "vocab_size": STANDIN["vocab"],
             "max_position_embeddings": STANDIN["max_positions"]}
    return memplan.model_config(shape, extra_tokens=1)


def test_llama_2_7b_plan_matches_its_public_shape() -> None:
    config = memplan.model_config(memplan.LLAMA_2_7B, extra_tokens=1)
    n = llama_parameters(4096, 11008, 32, 32001)
    assert n == 6_738_423_808  # Llama-2-7B's 6,738,415,616 plus one 4096-wide pad row
    plan = memplan.plan_evaluate(config, batch=1, tokens=4096, skills=3)
    # θ_G's copy in bf16 and three float32 task vectors, all on the host.
    assert plan.host["merger copies (θ_G + task vectors)"] == n * 2 + 3 * n * 4
    assert plan.gpu["bf16 model"] == n * 2
    # lm-eval's forward at the full context: bf16 logits and a bf16 KV cache of 32 layers.
    kv_cache = 32 * 2 * 4096 * 4096 * 2
    assert plan.gpu["forward outputs (batch 1 × 4096)"] == 4096 * 32001 * 2 + kv_cache
    assert plan.gpu_bytes <= 80 * memplan.GB


def test_finetune_shards_as_fsdp2_does() -> None:
    config = memplan.model_config(memplan.LLAMA_2_7B, extra_tokens=1)
    plan = memplan.plan_finetune(config, gpus=4, micro_batch=4, max_len=2048,
                                 mixed_precision="bf16", activation_checkpointing=True)
    # FSDP2 splits dim 0 of each parameter into 4, rank 0 holding the first ceil(d0/4) rows.
    model = memplan.meta_model(config, torch.float32)
    expected = sum(math.ceil(p.shape[0] / 4) * p[0].numel() * 4 for p in model.parameters())
    assert plan.gpu["fp32 weights (shard)"] == expected
    assert plan.gpu["AdamW states (shard)"] == 2 * expected
    assert plan.gpu_bytes <= 80 * memplan.GB
    assert plan.host["fp32 model loaded by 4 worker(s)"] == 4 * llama_parameters(
        4096, 11008, 32, 32001) * 4


def test_standin_plan_equals_what_real_objects_hold(tmp_path: Path) -> None:
    """At the stand-in's width, the real model and a real InPlaceMerger over real task-vector
    files hold exactly the bytes the meta plan counts."""
    config = standin_config()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    paths = []
    for k in range(2):
        path = tmp_path / f"tau{k}.safetensors"
        save_file({name: torch.randn(p.shape) * 0.01 for name, p in model.state_dict().items()
                   if name != "lm_head.weight" or not config.tie_word_embeddings}, path,
                  metadata={"format": "pt", "mtl_kind": "task_vector", "model_type": "llama"})
        paths.append(path)
    merger = InPlaceMerger(model, paths)
    real_held = sum(t.numel() * t.element_size() for t in merger.held())
    plan = memplan.plan_evaluate(config, batch=2, tokens=16, skills=2)
    assert plan.host["merger copies (θ_G + task vectors)"] == real_held
    assert plan.gpu["bf16 model"] == sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        out = model(input_ids=torch.zeros(2, 16, dtype=torch.long))
    real_out = out.logits.numel() * 2 + sum(
        layer.keys.numel() * 2 + layer.values.numel() * 2 for layer in out.past_key_values.layers)
    assert plan.gpu["forward outputs (batch 2 × 16)"] == real_out
    # Held copies live on the host, not on the model's device.
    assert all(t.device.type == "cpu" for t in merger.held())
    # The scratch a real merge keeps, plus one streamed input in flight (the largest tensor).
    merger.apply([0.3, 0.4])
    largest = max(p.numel() for p in model.parameters()) * 4
    assert plan.gpu["merger scratch (float32)"] == merger.scratch_bytes() + largest


def test_paper_plans_all_fit_80_gb() -> None:
    config: dict = {}
    for name in ("config.yaml", "paper.yaml"):
        memplan._layer(config, yaml.safe_load((REPO / "config" / name).read_text()))
    plans = memplan.paper_plans(config)
    jobs = [p.job for p in plans]
    for kind in ("finetune", "task_vector", "evaluate_model", "evaluate_merge (1 skill)",
                 "evaluate_merge (2 skills)", "evaluate_merge (3 skills)", "judge harmbench",
                 "judge toxigen", "judge truthfulqa_truth", "judge truthfulqa_info"):
        assert any(job.startswith(kind) for job in jobs), kind
    assert all(not memplan.fits(p, 80 * memplan.GB) for p in plans)
    # A 40 GB GPU does not hold the 13B judge beside anything: the plan says so.
    assert memplan.fits(next(p for p in plans if p.job == "judge harmbench"), 20 * memplan.GB)


def test_small_gpu_stops_the_job_before_loading(tmp_path: Path, monkeypatch) -> None:
    """Only config.json is there (no weights): the check fails without reading a tensor."""
    folder = tmp_path / "model"
    folder.mkdir()
    standin_config().save_pretrained(folder)
    monkeypatch.setenv(preflight.ENV_GPU_MEMORY, "0.001")
    plan = memplan.evaluation_plan(folder, skills=1, method="task_arithmetic", batch_size=4,
                                   judges=[], judge_root=tmp_path)
    with pytest.raises(preflight.PreflightError, match=r"evaluate_merge.*evaluation\.batch_size"):
        preflight.check_plan(plan)
    monkeypatch.setenv(preflight.ENV_GPU_MEMORY, "80")
    preflight.check_plan(plan)
    with pytest.raises(preflight.PreflightError, match="host memory"):
        preflight.check_plan(plan, host_mb=0)


def test_gpu_count_and_disk_and_token(tmp_path: Path, monkeypatch) -> None:
    plan = memplan.JobPlan("finetune (4 GPU)", 4, {"x": 1}, {}, key="resources.finetune.gpu")
    monkeypatch.setenv(preflight.ENV_GPU_MEMORY, "80")
    monkeypatch.setenv(preflight.ENV_GPU_COUNT, "2")
    with pytest.raises(preflight.PreflightError, match="sees 2"):
        preflight.check_plan(plan)
    monkeypatch.setenv(preflight.ENV_DISK_FREE, "1")
    with pytest.raises(preflight.PreflightError, match=r"needs 2\.0 GB"):
        preflight.check_disk(tmp_path / "not" / "yet", 2 * memplan.GB, "a checkpoint")
    preflight.check_disk(tmp_path, memplan.GB // 2, "a checkpoint")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    preflight.check_token("open/model", gated=False)
    with pytest.raises(preflight.PreflightError, match="gated"):
        preflight.check_token("meta-llama/Llama-2-7b-hf", gated="manual")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    preflight.check_token("meta-llama/Llama-2-7b-hf", gated="manual")


def test_broken_sandbox_stops_at_start(monkeypatch) -> None:
    from mtl import sandbox

    monkeypatch.setenv(sandbox.ENV_SWITCH, "bogus")
    sandbox._isolation.cache_clear()
    try:
        with pytest.raises(preflight.PreflightError, match="coding benchmarks cannot run"):
            preflight.check_sandbox()
    finally:
        sandbox._isolation.cache_clear()


def test_command_prints_the_table(capsys) -> None:
    assert memplan.main(["--config", str(REPO / "config" / "standin.yaml")]) == 0
    out = capsys.readouterr().out
    assert "| evaluate_merge (3 skills) |" in out and "| finetune (2 GPU) |" in out


def test_evaluated_model_leaves_the_gpu_while_a_judge_runs(tmp_path: Path, monkeypatch) -> None:
    from mtl import judges

    AutoModelForCausalLM.from_config(standin_config()).save_pretrained(tmp_path / "harmbench")
    monkeypatch.setenv(judges.ENV_DIR, str(tmp_path))
    monkeypatch.setattr(judges, "_ROOM", [])
    events: list[str] = []
    judges.make_room(lambda: events.append("off"), lambda: events.append("back"))
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", lambda folder: "tok")
    with judges._loaded("harmbench", "causal") as (judge, tokenizer):
        assert events == ["off"] and tokenizer == "tok" and judge.config.model_type == "llama"
    assert events == ["off", "back"]


def test_weights_bytes_sums_a_folders_safetensors(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(10, 10)}, tmp_path / "a.safetensors")
    save_file({"v": torch.zeros(5)}, tmp_path / "b.safetensors")
    (tmp_path / "config.json").write_text("{}")
    total = sum((tmp_path / n).stat().st_size for n in ("a.safetensors", "b.safetensors"))
    assert preflight.weights_bytes(tmp_path) == total > 420
    assert preflight.weights_bytes(tmp_path / "b.safetensors") < total
