"""The toy world's word-level tokenizer (rule world_tokenizer): every word of the corpus, the
general mix and the eval suites, and every word each skill family can produce (not the skill
datasets themselves, so resizing a skill does not change the tokenizer). Params: `world`."""

import random

from mtl.io import atomic_dir, read_jsonl
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.toy_model import build_tokenizer
from mtl.world import SKILL_FAMILIES, make_entities

# Draws per skill family when listing the words it can produce: its spaces are small (4 ops x
# 10 x 10 programs; 3 of the entities per passage), so this covers every word many times over.
FAMILY_DRAWS = 5000

smk = snakemake
world = smk.params.world
log = setup(smk, seed=world["seed"])


def family_words(seed: int, n_entities: int) -> set[str]:
    """Every word the skill families produce, independent of how many rows each skill has."""
    entities = make_entities(random.Random(seed), n_entities)  # build_world's first draw
    words: set[str] = set()
    for name, family in sorted(SKILL_FAMILIES.items()):
        rng = random.Random(f"{seed}-{name}")
        for _ in range(FAMILY_DRAWS):
            prompt, answer, _extra = family(rng, entities)
            words.update(prompt.split() + answer.split())
    return words


with Step.from_snakemake(smk, seed=world["seed"]) as step:
    texts = [row["text"] for row in read_jsonl(smk.input.corpus, required=("text",))]
    for path in [smk.input.general, *smk.input.suites]:
        texts += [m["content"] for row in read_jsonl(path, required=("messages",))
                  for m in row["messages"]]
    texts.append(" ".join(sorted(family_words(world["seed"], world["entities"]))))
    tokenizer = build_tokenizer(texts)
    with atomic_dir(smk.output.artifact) as tmp:
        tokenizer.save_pretrained(tmp)
    log.info("tokenizer: %d tokens", len(tokenizer))
    step.note(vocab=len(tokenizer))
