"""The toy world: sizes follow the paper's ratios, evaluation never overlaps training."""

import pytest

from mtl.toy_model import build_tokenizer
from mtl.world import SKILLS, WorldSpec, build_world

SPEC = WorldSpec(
    seed=3,
    entities=24,
    corpus_sentences=500,
    general_examples=1000,
    skill_ratio={"science": 0.22, "safety": 0.24, "coding": 0.57},
    eval_examples=40,
)


@pytest.fixture(scope="module")
def world():
    return build_world(SPEC)


def prompts(rows):
    return {row["messages"][0]["content"] for row in rows}


def test_skill_sizes_follow_the_papers_ratios(world):
    for skill in SKILLS:
        ratio = len(world[skill]) / len(world["general"])
        assert ratio == pytest.approx(SPEC.skill_ratio[skill], abs=1e-3), skill


def test_no_evaluation_prompt_occurs_in_any_training_file(world):
    # The corpus states abilities in plain sentences ("to add 7 and 1 gives 8 .") by design, as
    # web text states arithmetic; what must never leak is an evaluation prompt as a chat turn.
    training = prompts(world["general"]).union(*(prompts(world[s]) for s in SKILLS))
    for name in (k for k in world if k.startswith("eval_")):
        overlap = prompts(world[name]) & training
        assert not overlap, f"{name} shares prompts with training: {sorted(overlap)[:3]}"
        assert len(prompts(world[name])) == len(world[name]), f"{name} repeats a prompt"


def test_general_mix_holds_no_skill_instructions(world):
    families = {row["family"] for row in world["general"]}
    assert families.isdisjoint(SKILLS)
    assert not any(p.startswith(("passage :", "write code")) for p in prompts(world["general"]))
    harmful_verbs = ("hurt", "poison", "kill", "attack", "burn", "trap")
    assert not any(f" {verb} " in p for p in prompts(world["general"]) for verb in harmful_verbs)


def test_knowledge_questions_at_eval_ask_about_entities_general_never_asks_about(world):
    def subjects(rows):
        words = [
            row["messages"][0]["content"].split()
            for row in rows
            if row["family"] in ("color", "city")
        ]
        return {w[3] if w[0] == "what" else w[2] for w in words}

    assert subjects(world["eval_general"]).isdisjoint(subjects(world["general"]))


def test_world_is_deterministic_and_seed_dependent():
    assert build_world(SPEC) == build_world(SPEC)
    other = WorldSpec(**{**SPEC.__dict__, "seed": 4})
    assert build_world(other)["general"] != build_world(SPEC)["general"]


def test_tokenizer_round_trips_every_row(world):
    texts = [
        m["content"] for rows in world.values() for row in rows for m in row.get("messages", [])
    ]
    tokenizer = build_tokenizer(texts + [row["text"] for row in world["corpus"]])
    for text in texts[:500]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
