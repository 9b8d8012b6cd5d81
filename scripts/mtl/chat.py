"""Chat format and pad token for base models that have neither (Llama-2-7b-hf, the stand-in).

θ_G, θ_D, θ_CFT and θ_RT must all see the same token ids and the same embedding rows, or their
task vectors would not line up. So every finetuning run calls `prepare` on the tokenizer and
model it starts from: it is a no-op for a tokenizer that already has a template and a pad token
(the toy world's, and every finetuned model's, since they are saved with the prepared tokenizer),
and otherwise it sets the configured template and adds one pad token, the same way each time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

PAD_TOKEN = "<pad>"

# open-instruct's format, which the paper trained with (docs/paper-scale.md, finetuning):
# "<|user|>\n{content}\n<|assistant|>\n{content}</s>\n" per turn, the whole string stripped (no
# newline after the last </s>), BOS first; the generation prompt ends "<|assistant|>\n".
# Contents are stripped as open-instruct does. Unknown roles are errors, not silently dropped.
# A newline right after a block tag is removed by HF's Jinja settings (trim_blocks), hence the
# {{ '\n' }} expressions there.
TULU_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>\n{{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'user' %}<|user|>\n{{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'assistant' %}"
    "<|assistant|>\n{{ message['content'] | trim }}{{ eos_token }}"
    "{% if not loop.last %}{{ '\\n' }}{% endif %}"
    "{% else %}{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}"
    "{% if messages and messages[-1]['role'] == 'assistant' %}{{ '\\n' }}{% endif %}"
    "<|assistant|>\n"
    "{% endif %}"
)

TEMPLATES = {"tulu": TULU_TEMPLATE}

# The roles a training row may hold; anything else (a tool turn, say) would be dropped from the
# prompt by one template and fail deep inside another.
ROLES = ("system", "user", "assistant")
# Whether a chat format renders a system turn: Tülu's does; the toy world's (mtl.toy_model)
# has only user and assistant turns and would drop a system message without a word.
# tests/test_chat_rows.py holds this table to the templates themselves.
KEEPS_SYSTEM = {"toy": False, "tulu": True}


def check_rows(rows: Sequence[Mapping], origin: str, chat_format: str | None
               ) -> tuple[list[Mapping], list[int]]:
    """Every training row's turns, checked once before any training, wherever it came from
    (the hub, a file, the toy world): the rows to train on, and the (1-based) rows dropped.

    A row needs a non-empty list of turns, each with a role among ROLES and text content, and
    at least one assistant turn; a system turn only where `chat_format` renders one (None: the
    base model's own template, which the data stage cannot see, is trusted with it). Any of
    these broken stops with an error naming `origin` and the row. A row whose answer (any
    assistant turn) is empty or whitespace is dropped, not refused: it would train the model
    to answer with the end-of-turn token alone, and hub data holds a few such rows.
    """
    if chat_format is not None and chat_format not in KEEPS_SYSTEM:
        raise ValueError(f"chat format {chat_format!r}: expected one of {sorted(KEEPS_SYSTEM)}")
    kept, dropped = [], []
    for index, row in enumerate(rows):
        # A hub row's id traces it back to the dataset it was downloaded from.
        where = f"{origin}:{index + 1}" + (f" (id {row['id']})" if row.get("id") else "")
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{where}: 'messages' must be a non-empty list of turns")
        for turn, message in enumerate(messages, 1):
            if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
                raise ValueError(f"{where}: message {turn} needs a 'role' and text 'content'")
            role = message.get("role")
            if role not in ROLES:
                raise ValueError(f"{where}: message {turn} has role {role!r}; training rows "
                                 f"take only {', '.join(ROLES)} turns")
            if role == "system" and chat_format is not None and not KEEPS_SYSTEM[chat_format]:
                raise ValueError(
                    f"{where}: message {turn} is a system message, but the {chat_format} chat "
                    "format has no system turn (its template would drop it unseen): remove "
                    "system messages from this data, or train with a format that has one "
                    f"({', '.join(f for f, keeps in KEEPS_SYSTEM.items() if keeps)})"
                )
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        if not answers:
            raise ValueError(f"{where}: no assistant message (nothing to train on)")
        if any(not answer.strip() for answer in answers):
            dropped.append(index + 1)
        else:
            kept.append(row)
    return kept, dropped


def prepare_tokenizer(tokenizer, chat_template: str | None) -> bool:
    """Give `tokenizer` the configured chat template and a pad token if it lacks them.

    Returns whether a pad token was added (the model's embeddings must then grow by one row).
    A tokenizer that has a template keeps it: a finetuned model's tokenizer is already prepared.
    """
    if tokenizer.chat_template is None:
        if chat_template is None:
            raise ValueError(
                "the base model's tokenizer has no chat template: set model.chat_template "
                f"(one of {sorted(TEMPLATES)})"
            )
        if chat_template not in TEMPLATES:
            raise ValueError(f"model.chat_template {chat_template!r}: expected one of "
                             f"{sorted(TEMPLATES)}")
        tokenizer.chat_template = TEMPLATES[chat_template]
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        return True
    return False


def align_embeddings(model, vocab_size: int) -> None:
    """Grow input and output embeddings to `vocab_size`; new rows are the mean of the old ones.

    The mean is deterministic (no random draw), so every run from θ_pre gets identical new rows
    and the pad row cancels in task vectors τ = θ_D − θ_pre after `merge.resize_vocab: pad`.
    """
    old = model.get_input_embeddings().weight.shape[0]
    if old == vocab_size:
        return
    if old > vocab_size:
        raise ValueError(f"the model has {old} embedding rows but the tokenizer only "
                         f"{vocab_size} tokens")
    means = [m.weight.detach().mean(dim=0) for m in _embedding_modules(model)]
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        for module, mean in zip(_embedding_modules(model), means, strict=True):
            module.weight[old:] = mean.to(module.weight.dtype)
    model.config.pad_token_id = None  # set by the caller, who knows the tokenizer


def _embedding_modules(model) -> list[torch.nn.Module]:
    modules = [model.get_input_embeddings()]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not modules[0].weight:
        modules.append(output)
    return modules


def prepare(tokenizer, model, chat_template: str | None) -> None:
    """Template, pad token and embedding rows, the same way for every finetuning run."""
    prepare_tokenizer(tokenizer, chat_template)
    align_embeddings(model, len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
