"""The stand-in: the paper-scale code paths on a CPU, in minutes, with nothing downloaded.

Made here instead of fetched: a tiny random Llama-2-shaped model (untied embeddings, grouped
rotary attention, SwiGLU) with a byte-level BPE tokenizer that, like Llama-2-7b-hf's, has BOS,
EOS and UNK but no chat template and no pad token, so finetuning must add both (vocabulary
V → V+1, the 32000 → 32001 of the paper); and stand-in rows in each hub dataset's real schema
(each dataset's card on the hub; ids in config/paper.yaml), which the fetch rule loads
through `datasets` from local files exactly as it loads the hub's.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, UNK = "<s>", "</s>", "<unk>"

TULU_SOURCES = ["flan_v2", "cot", "oasst1", "lima", "gpt4_alpaca", "sharegpt", "wizardlm",
                "open_orca", "code_alpaca", "hard_coded", "science.evidence_inference",
                "science.qasper_truncated_4000", "science.scifact_json", "science.scierc_ner"]
SCIRIFF_TASKS = ["annotated_materials_syntheses_events", "chemsum_single_document_summarization",
                 "genia_ner", "healthver_entailment", "mslr2022_ms2_multidoc_summarization",
                 # Two of the nine evaluation tasks, which the training filter must leave out.
                 "scierc_ner", "qasper_abstractive_qa"]
WILDJAILBREAK_TYPES = ["vanilla_harmful", "vanilla_benign", "adversarial_harmful",
                       "adversarial_benign"]
# The Tülu row whose prompt is longer than the stand-in's max_len: training drops it (its answer
# is cut away entirely) and counts it.
LONG_ROW = 5
COCONOT_CATEGORIES = ["Requests with safety concerns", "Incomplete requests",
                      "Unsupported requests", "Indeterminate requests", "Humanizing requests"]
LANGS = ["python", "javascript", "java", "c++", "sql"]

_WORDS = [
    "the", "model", "reads", "a", "short", "note", "about", "cells", "proteins", "graphs", "code",
    "loops", "values", "lists", "tables", "rivers", "cities", "planets", "numbers", "safety",
    "rules", "help", "answer", "question", "explain", "why", "how", "what", "which", "first",
    "second", "result", "method", "study", "data", "sample", "effect", "claim",
]


_SYLLABLES = ["ka", "lo", "mi", "ne", "ro", "su", "ta", "vi", "zo", "pe", "qu", "ash", "en", "or"]


def _vocabulary(seed: int) -> list[str]:
    """Common words plus invented ones, so the BPE has enough to merge (a richer vocabulary)."""
    rng = random.Random(seed)
    invented = {"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
                for _ in range(600)}
    return _WORDS + sorted(invented)


def _text(rng: random.Random, words: list[str], low: int, high: int) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))


def _chat(rng: random.Random, words: list[str], source: str) -> list[dict]:
    """One to three turns; open_orca rows start with a system turn, as in Tülu v2."""
    messages = []
    if source == "open_orca":
        messages.append({"role": "system", "content": _text(rng, words, 3, 8)})
    for _ in range(rng.choice([1, 1, 2, 3])):
        messages.append({"role": "user", "content": _text(rng, words, 4, 40)})
        messages.append({"role": "assistant", "content": _text(rng, words, 2, 60)})
    return messages


def datasets(rows: int, seed: int) -> dict[str, list[dict]]:
    """Stand-in rows in the real schemas of the paper's training sets (and CoCoNot, the
    ungated safety fallback)."""
    rng = random.Random(seed)
    words = _vocabulary(seed)
    tulu = [{"dataset": (s := TULU_SOURCES[i % len(TULU_SOURCES)]), "id": f"{s}_{i}",
             "messages": _chat(rng, words, s)} for i in range(rows)]
    tulu[LONG_ROW]["messages"][0]["content"] = _text(rng, words, 600, 600)
    sciriff = [{"input": _text(rng, words, 8, 60), "output": _text(rng, words, 2, 40),
                "_instance_id": f"{SCIRIFF_TASKS[i % len(SCIRIFF_TASKS)]}:train:{i}",
                "metadata": {"task_family": "ie", "domains": ["biomedicine"]}}
               for i in range(rows)]
    code = [{"query": _text(rng, words, 6, 40), "answer": _text(rng, words, 10, 80),
             "lang": LANGS[i % len(LANGS)]} for i in range(rows)]
    # A quarter of the WildJailbreak stand-in rows are the vanilla harmful ones the config keeps.
    types = [WILDJAILBREAK_TYPES[i % len(WILDJAILBREAK_TYPES)] for i in range(rows)]
    wildjailbreak = [{"vanilla": _text(rng, words, 4, 30),
                      "adversarial": _text(rng, words, 8, 40) if t.startswith("adv") else "",
                      "completion": _text(rng, words, 4, 40), "data_type": t} for t in types]
    # Half the CoCoNot stand-in rows are the safety category the fallback keeps.
    categories = [COCONOT_CATEGORIES[0 if i % 2 == 0 else 1 + i % 4] for i in range(rows)]
    coconot = [{"id": f"coconot_{i}", "category": c, "subcategory": c.split()[0].lower(),
                "prompt": _text(rng, words, 4, 30), "response": _text(rng, words, 4, 40)}
               for i, c in enumerate(categories)]
    return {"tulu-v2-sft-mixture": tulu, "SciRIFF": sciriff,
            "CodeFeedback-Filtered-Instruction": code, "wildjailbreak": wildjailbreak,
            "coconot": coconot}


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE like Llama-2's in what matters here: BOS/EOS/UNK, no template, no pad."""
    core = Tokenizer(models.BPE(unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[UNK, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK, model_max_length=4096)


def build_model(tokenizer: PreTrainedTokenizerFast, hidden: int, layers: int, heads: int,
                kv_heads: int, intermediate: int, max_positions: int) -> LlamaForCausalLM:
    """Llama-2's architecture at a tiny width, random weights from the global seed."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads,
        intermediate_size=intermediate, max_position_embeddings=max_positions,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config)


def corpus_texts(tables: dict[str, list[dict]]) -> list[str]:
    """Every string in the stand-in rows (the BPE is trained on them)."""
    texts = []
    for rows in tables.values():
        for row in rows:
            texts += [m["content"] for m in row.get("messages", [])]
            texts += [str(v) for k, v in row.items()
                      if k in ("query", "answer", "prompt", "response", "input", "output",
                               "vanilla", "adversarial", "completion")]
    return texts
