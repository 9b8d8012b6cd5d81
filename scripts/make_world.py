"""Generate one part of the toy world: the corpus, the eval suites, one dataset, or the tokenizer.

Each part is its own rule with only the world keys it depends on as params (rules/common.smk),
so changing one skill's size rebuilds that skill alone. The corpus, suites and datasets all come
from one `build_world` call on the whole world config, which keeps every part exactly what a
single generation would make (evaluation prompts stay out of training rows).
"""

import random

from mtl.io import atomic_dir, read_jsonl, write_jsonl
from mtl.provenance import Step
from mtl.stepkit import setup
from mtl.toy_model import build_tokenizer
from mtl.world import SKILL_FAMILIES, WorldSpec, build_world, make_entities

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
    if smk.rule == "world_tokenizer":
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
    else:
        # The whole config, not only params: a part drawn later in the stream needs the counts
        # of everything drawn before it, which are exactly its params.
        built = build_world(WorldSpec(**smk.config["world"]))
        if smk.rule == "world_eval":  # outputs eval_<suite>, each with its eval_<suite>_prov
            parts = {name: name for name, _path in smk.output.items()
                     if name.startswith("eval_") and not name.endswith("_prov")}
        else:
            parts = {smk.wildcards.get("dataset", "corpus"): "artifact"}
        rows = {}
        for name, output in parts.items():
            if name not in built:
                raise ValueError(f"config data: the toy world has no {name!r}; it makes "
                                 f"{sorted(built)}")
            write_jsonl(smk.output[output], built[name])
            rows[name] = len(built[name])
            log.info("%s: %d rows -> %s", name, rows[name], smk.output[output])
        step.note(rows=rows)
