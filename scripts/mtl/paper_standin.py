"""Paper-scale stand-ins for tests and CI: tiny random models of the judges' architectures with a
byte-level tokenizer, and the Tülu chat template.

With `evaluation.standin: true`, `fetch_judge` writes these judges and `fetch_evaldata` each
benchmark's stand-in rows (its registry entry, mtl.benchmarks), so the paper's tasks run end to
end offline, on the CPU, in seconds.
"""

from __future__ import annotations

from pathlib import Path

# Tülu's chat format (open-instruct): what the trained tokenizers carry.
TULU_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def byte_tokenizer(chat_template: str | None, max_length: int, wrap: bool = False):
    """Lossless on any text: one token per byte, plus the chat and special tokens. `wrap`: every
    text becomes `<s> … </s>`, as RoBERTa's tokenizer does (so even an empty text has tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(specials + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    if wrap:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", bos_token="<s>",
        unk_token="<unk>", additional_special_tokens=specials[4:], chat_template=chat_template,
        model_max_length=max_length)


def tiny_llama(tokenizer, positions: int):
    """A one-layer random Llama (seeded) over `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=positions, pad_token_id=0, eos_token_id=1,
                         bos_token_id=2)
    return LlamaForCausalLM(config).eval()


def write_judge(key: str, folder: Path) -> None:
    """A tiny random judge of the paper judge's architecture (RoBERTa classifier or Llama)."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    # The ToxiGen RoBERTa's tokenizer wraps each text (an empty completion is still 2 tokens).
    tokenizer = byte_tokenizer(None, 512, wrap=key == "toxigen")
    torch.manual_seed(0)
    if key == "toxigen":
        model = RobertaForSequenceClassification(RobertaConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
            num_attention_heads=2, intermediate_size=32, max_position_embeddings=520,
            pad_token_id=0, num_labels=2))
    elif key in ("harmbench", "truthfulqa_truth", "truthfulqa_info"):
        model = tiny_llama(tokenizer, 8192)
    else:
        raise ValueError(f"no stand-in for judge {key!r}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_workspace(root: Path) -> Path:
    """What the fetch rules write with `evaluation.standin: true`, without the workflow: every
    benchmark's stand-in rows in root/results/evaldata/ and every judge in root/judges/, which is
    returned (point `mtl.judges.ENV_DIR` at it)."""
    import json

    from mtl.benchmarks import BENCHMARKS
    from mtl.judges import JUDGES

    for name, benchmark in BENCHMARKS.items():
        path = root / "results" / "evaldata" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in benchmark.standin()))
    for key in JUDGES:
        write_judge(key, root / "judges" / key)
    return root / "judges"
