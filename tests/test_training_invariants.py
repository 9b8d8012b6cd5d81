"""Two invariants of the training loop (mtl.training.train), each against an independent oracle:

- one optimizer step over micro-batches equals the step over the whole batch, written here as
  one forward pass with a mean loss over every target token, for uneven micro-batches of
  sequences of uneven length (a loss normalised per micro-batch instead of per global batch
  breaks it);
- the learning rate at each step is the schedule written out by hand: linear warmup to the
  peak, then linear decay to zero at the end (a skipped warmup breaks it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl.toy_model import build_model, build_tokenizer
from mtl.training import IGNORE, TrainConfig, collate, encode_chat, train

LR = 1e-2
# Sums of different lengths: prompts and answers of 1 to 6 words, so sequence lengths differ.
ROWS = [
    {"messages": [{"role": "user", "content": "add " + " and ".join(map(str, range(n)))},
                  {"role": "assistant", "content": " ".join(str(d) for d in range(n))}]}
    for n in range(1, 7) for _ in range(2)
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([m["content"] for row in ROWS for m in row["messages"]])


def model_of(tokenizer) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(len(tokenizer), 16, 1, 2, 32, 32, tokenizer)


def whole_batch_step(model: torch.nn.Module, examples, pad_id: int) -> None:
    """The reference: one forward pass over the whole batch, the mean over its target tokens,
    gradient clipping at 1, one AdamW step at the peak learning rate."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    inputs = collate(examples, pad_id, "cpu")
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), inputs["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE, reduction="mean")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


@pytest.mark.parametrize(("batch", "micro"), [(7, 3), (12, 5), (8, 1), (12, 12)])
def test_a_step_over_micro_batches_is_the_step_over_the_whole_batch(
    tokenizer, tmp_path: Path, batch: int, micro: int
) -> None:
    examples = encode_chat(ROWS[:batch], tokenizer, 32, "rows")
    lengths = {len(e.input_ids) for e in examples}
    assert len(lengths) > 2  # uneven sequences; micro-batches of 7 by 3 are 3, 2, 2
    # One step (as many examples as the batch), no warmup: warmup_ratio rounds to one step.
    cfg = TrainConfig(lr=LR, batch_size=batch, epochs=1, warmup_ratio=0.0, micro_batch=micro,
                      checkpoint_every=0, seed=3)
    stepped = model_of(tokenizer)
    summary = train(stepped, examples, cfg, tokenizer.pad_token_id, tmp_path / "resume", "run")
    assert summary["steps"] == 1
    reference = model_of(tokenizer)
    reference.train()
    whole_batch_step(reference, examples, tokenizer.pad_token_id)

    start = model_of(tokenizer).state_dict()
    ours, theirs = stepped.state_dict(), reference.state_dict()
    moved = max((theirs[k] - start[k]).abs().max().item() for k in start)
    assert moved > LR / 2  # the step did change the weights
    worst = max((ours[k] - theirs[k]).abs().max().item() for k in start)
    assert worst < 1e-6, f"micro-batches of {micro} differ from the whole batch by {worst}"


def schedule_by_hand(peak: float) -> list[float]:
    """10 steps, warmup_ratio 0.3: three warmup steps to the peak, then linear decay that would
    reach zero at step 10."""
    return [peak * f for f in (1 / 3, 2 / 3, 1, 1, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7)]


def test_the_learning_rate_at_each_step_is_the_schedule_written_out(
    tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[float] = []

    class Recording(torch.optim.AdamW):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    examples = encode_chat(ROWS[:4], tokenizer, 32, "rows")
    cfg = TrainConfig(lr=LR, batch_size=4, epochs=10, warmup_ratio=0.3, checkpoint_every=0,
                      seed=1)
    summary = train(model_of(tokenizer), examples, cfg, tokenizer.pad_token_id,
                    tmp_path / "resume", "run")
    assert summary["steps"] == 10
    assert seen == pytest.approx(schedule_by_hand(LR), rel=1e-12)
