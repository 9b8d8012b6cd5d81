"""The toy world's tokenizer and Llama-style model, in Hugging Face format.

The tokenizer is word-level: the world writes every token separated by a single space, so
whitespace splitting is lossless and sequences stay short (a science prompt is ~30 tokens).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
SPECIALS = (PAD, BOS, EOS, UNK, USER, ASSISTANT)

# One turn is "<|user|> text <|assistant|> text </s>"; the generation prompt ends at
# "<|assistant|>", so loss masking and lm-eval prompting agree token for token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|> {{ message['content'] }} "
    "{% elif message['role'] == 'assistant' %}<|assistant|> {{ message['content'] }} </s> "
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every word in `texts` (sorted, so ids are deterministic)."""
    words = sorted({word for text in texts for word in text.split()} - set(SPECIALS))
    vocab = {token: index for index, token in enumerate([*SPECIALS, *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Word pieces are whole words: decoding joins them with single spaces.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT],
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
        padding_side="left",
    )


def build_model(
    vocab_size: int,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    max_positions: int,
    tokenizer: PreTrainedTokenizerFast,
) -> LlamaForCausalLM:
    """A small Llama with untied embeddings (as Llama-2), initialized from the global seed."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        attention_dropout=0.0,
    )
    return LlamaForCausalLM(config)
