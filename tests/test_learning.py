"""Training learns: after `mtl.training.train` the model predicts answers from their prompts.

"Learned" is measured against what a model could reach without reading the prompt: the
entropy of each supervised token given only the token before it (the best any bigram model
does: it knows a number follows "<|assistant|>" and "</s>" follows a number, but not which
number). Loss below that bound is only reachable by using the operands in the prompt.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import pytest
import torch

from mtl.toy_model import build_model, build_tokenizer
from mtl.training import IGNORE, Example, TrainConfig, encode_chat, train

ROWS = [
    {"messages": [{"role": "user", "content": f"add {a} and {b}"},
                  {"role": "assistant", "content": str(a + b)}]}
    for a in range(10) for b in range(10)
]


def _entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values())


def prompt_blind_entropy(examples: list[Example]) -> float:
    """Mean entropy (nats per supervised token) of each label given the token before it."""
    by_previous: dict[int, Counter] = defaultdict(Counter)
    for example in examples:
        for position in range(1, len(example.labels)):
            if example.labels[position] != IGNORE:
                by_previous[example.input_ids[position - 1]][example.labels[position]] += 1
    total = sum(sum(c.values()) for c in by_previous.values())
    return sum(sum(c.values()) * _entropy(c) for c in by_previous.values()) / total


def mean_loss(model: torch.nn.Module, examples: list[Example]) -> float:
    """Cross-entropy per supervised token (nats), in evaluation mode."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            logits = model(input_ids=torch.tensor([example.input_ids])).logits[0, :-1].float()
            labels = torch.tensor(example.labels[1:])
            total += torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE,
                                                       reduction="sum").item()
            count += int((labels != IGNORE).sum())
    return total / count


def test_training_drives_the_loss_below_what_ignoring_the_prompt_allows(tmp_path):
    tokenizer = build_tokenizer([m["content"] for row in ROWS for m in row["messages"]])
    examples = encode_chat(ROWS, tokenizer, 32, "rows")
    torch.manual_seed(0)
    model = build_model(len(tokenizer), 32, 1, 2, 64, 32, tokenizer)
    before = mean_loss(model, examples)
    bound = prompt_blind_entropy(examples)
    # Sanity of the yardstick: an untrained model is no better than uniform over the
    # vocabulary, and the bound is below the plain unigram entropy of the labels.
    assert before == pytest.approx(math.log(len(tokenizer)), rel=0.15)
    labels = Counter(t for e in examples for t in e.labels if t != IGNORE)
    assert bound < _entropy(labels)

    cfg = TrainConfig(lr=5e-3, batch_size=8, epochs=30, checkpoint_every=0, seed=5)
    summary = train(model, examples, cfg, tokenizer.pad_token_id, tmp_path, "learn")
    after = mean_loss(model, examples)
    assert after < before / 4, (before, after)
    assert after < bound / 2, f"loss {after:.3f} is not well below the prompt-blind {bound:.3f}"
    # The summary's final loss is the same quantity over the last steps' batches.
    assert summary["final_loss"] == pytest.approx(after, abs=0.25)
