"""Generation backends behind lm-eval: static batches, or continuous batching on the same model.

lm-eval's `HFLM` generates in static batches: each batch of prompts runs until its longest
output ends, so short answers wait for long ones. `ContinuousHFLM` keeps every part of lm-eval
(prompt building, tokenization, truncation, stop sequences, filters, metrics, caching) and
replaces only the call that produces tokens: every prompt of a generation setting is handed to
transformers' continuous batching (paged KV cache; a finished request's slot is refilled at
once) on the model object already in memory, so a merge set in place is evaluated without a
reload. Requests stop at the end-of-sequence token or, streamed, as soon as their text holds a
stop sequence, which is where lm-eval would cut the static output.

Greedy outputs are the static path's token for token where the two attention kernels agree
(tests/test_generation.py checks the toy and stand-in tasks). Sampled outputs come from the same
distribution but not the same draws: the continuous manager seeds one generator for the whole
run, static batches draw in batch order.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from lm_eval.models.huggingface import HFLM

BACKENDS = ("static", "continuous")

# Tokens of the text's end decoded to look for a stop sequence: the longest stop sequence's
# characters plus slack for tokens that decode to nothing alone (byte pieces).
_TAIL_SLACK = 8
# The CPU has no memory probe for the paged cache: size it from the workload instead.
_CPU_PAGE = 32
_CPU_BATCH_TOKENS = 2048


def lm_class(backend: str) -> type[HFLM]:
    """lm-eval's model class for a backend name (config `evaluation.backend`)."""
    if backend not in BACKENDS:
        raise ValueError(f"config evaluation.backend: {backend!r} is not one of {BACKENDS}")
    return HFLM if backend == "static" else ContinuousHFLM


class ContinuousHFLM(HFLM):
    """HFLM whose `generate_until` runs each generation setting's prompts as one continuous
    batch; loglikelihood requests (multiple choice) keep HFLM's batched forward pass."""

    def __init__(self, *args, seed: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._seed = seed

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        # One lm-eval "batch" per generation setting: the continuous batch schedules inside it.
        saved = self.batch_size_per_gpu
        self.batch_size_per_gpu = max(len(requests), 1)
        try:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        finally:
            self.batch_size_per_gpu = saved

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str],
                        **generation_kwargs) -> torch.Tensor:
        """What HFLM's static `generate` returns — each row's (left-padded) context, then its
        new tokens, padded — computed by continuous batching."""
        mask = generation_kwargs.pop("attention_mask")
        # As HFLM's static path: greedy unless the task samples; no temperature when greedy.
        generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
        if generation_kwargs["temperature"] == 0.0 and generation_kwargs.get("do_sample") is None:
            generation_kwargs["do_sample"] = False
        if generation_kwargs.get("do_sample") is False and generation_kwargs["temperature"] == 0.0:
            generation_kwargs.pop("temperature")
        # The model's own generation_config under the task's settings, as `generate` merges them.
        config = copy.deepcopy(self.model.generation_config)
        config.update(**generation_kwargs)
        config.pad_token_id = self.tokenizer.pad_token_id
        max_new = max_length - context.shape[1]
        prompts = [row[m.bool()].tolist() for row, m in zip(context.cpu(), mask.cpu(),
                                                             strict=True)]
        outputs = self._continuous(prompts, config, max_new, stop)
        pad = self.tokenizer.pad_token_id
        rows = [context[i].tolist() + out + [pad] * (max_new - len(out))
                for i, out in enumerate(outputs)]
        return torch.tensor(rows, dtype=context.dtype)

    def _continuous(self, prompts: Sequence[list[int]], config, max_new: int,
                    stop: Sequence[str]) -> list[list[int]]:
        """Each prompt's new tokens, stopped at EOS, at `max_new`, or once a stop sequence
        appears in the decoded text (the tokens up to then hold lm-eval's cut)."""
        from transformers import ContinuousBatchingConfig

        stops = [s for s in stop if s]
        tail = max((len(s) for s in stops), default=0) + _TAIL_SLACK
        # The model keeps its attention implementation: the loglikelihood tasks and the next
        # merge point run on it too, and the greedy outputs must stay the static path's.
        cb_config = ContinuousBatchingConfig(seed=self._seed, auto_switch_to_flash=False,
                                             **self._cache_size(prompts, max_new))
        done: dict[str, list[int]] = {}
        ids: list[str] = []
        with self.model.continuous_batching_context_manager(
                generation_config=config, continuous_batching_config=cb_config,
                warmup=self.model.device.type == "cuda", block=True) as manager:
            for index, prompt in enumerate(prompts):
                ids.append(f"p{index}")
                manager.add_request(input_ids=prompt, request_id=ids[-1], max_new_tokens=max_new,
                                    streaming=bool(stops))
            while len(done) < len(ids):
                result = manager.get_result(timeout=1)
                if result is None:
                    if not manager.is_running():
                        raise RuntimeError("continuous batching stopped with "
                                           f"{len(ids) - len(done)} requests unfinished")
                    continue
                if result.request_id in done:
                    continue  # a request cancelled at its stop sequence, reported once more
                if result.error is not None:
                    raise RuntimeError(f"continuous batching: request {result.request_id} failed: "
                                       f"{result.error}")
                tokens = list(result.generated_tokens)
                if result.is_finished():
                    done[result.request_id] = tokens
                elif any(s in self.tok_decode(tokens[-tail:]) for s in stops):
                    done[result.request_id] = tokens
                    manager.cancel_request(result.request_id)
        return [done[i] for i in ids]

    def _cache_size(self, prompts: Sequence[list[int]], max_new: int) -> dict[str, int]:
        """On a GPU transformers sizes the paged cache from free memory; on the CPU, from the
        requests (its default would reserve the host's memory and crawl)."""
        if self.model.device.type == "cuda":
            return {}
        pages = sum(math.ceil((len(p) + max_new) / _CPU_PAGE) for p in prompts)
        longest = max(len(p) for p in prompts) + max_new
        return {"page_size": _CPU_PAGE, "num_blocks": max(pages, 1),
                "max_batch_tokens": max(_CPU_BATCH_TOKENS, longest)}
